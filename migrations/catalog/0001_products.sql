-- The catalog service's database. The catalog-cdc connector captures public.products
-- (replica identity = primary key: updates and deletes carry the key, not the old row).
CREATE TABLE products (
    id          uuid PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    title       text NOT NULL,
    description text,
    category    text,
    brand       text,
    price       numeric(12, 2) NOT NULL CHECK (price >= 0),
    image_urls  text[] NOT NULL DEFAULT '{}',
    seller      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Product images as sellers upload them: one row per image, carried by the catalog-cdc
-- connector to cdc.catalog.product-images.v1, where image-quality checks each one. The
-- storefront shows an image only once image-quality passed it (its projection in Redis).
-- products.image_urls stays for the search index's thumbnail and older readers.
CREATE TABLE product_images (
    id          uuid PRIMARY KEY,
    product_id  uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    url         text NOT NULL,
    position    integer NOT NULL DEFAULT 0,
    seller      text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX product_images_by_product ON product_images (product_id, position);

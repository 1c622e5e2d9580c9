-- The recommendations processor's store. Single writer: the `recommendations` consumer group
-- (each record is handled by the instance owning its partition). Every row is keyed by the
-- id of the event it came from, and every write is an insert that ignores a row already there
-- or an upsert guarded by the source's version, so a record handled twice (after a crash,
-- before its offset was committed) changes nothing. Training only reads.

-- One row per weighted interaction: a view, an add-to-cart, a checkout started in the
-- storefront (`checkout`), or a line of a placed order (`purchase`).
CREATE TABLE interactions (
    event_id    text PRIMARY KEY,
    user_id     text NOT NULL,
    product_id  text NOT NULL,
    kind        text NOT NULL,
    weight      real NOT NULL,
    order_id    text,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX interactions_order ON interactions (order_id) WHERE kind = 'purchase';

-- What training needs of each product: its category (catalog CDC, versioned by the commit's
-- LSN) and whether it can be bought (availability, versioned by the ledger's sequence).
CREATE TABLE products (
    product_id     text PRIMARY KEY,
    category       text,
    listed         boolean NOT NULL DEFAULT true,
    catalog_lsn    bigint NOT NULL DEFAULT -1,
    in_stock       boolean NOT NULL DEFAULT true,
    stock_sequence bigint NOT NULL DEFAULT -1
);

-- One row per training run (scheduled or `fleet recs train`); the schedule reads the last
-- finished one, so a restart does not retrain early.
CREATE TABLE model_runs (
    version      text PRIMARY KEY,
    trigger      text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    users        integer,
    items        integer,
    interactions bigint,
    report       jsonb
);

-- The warehouse service's database: physical units per product, fulfillment center and
-- status. Reservations are not here: the inventory processor owns them (issue 6) and reads
-- this table's changes through warehouse-cdc as restocks and adjustments.
CREATE TABLE stock (
    product_id         uuid NOT NULL,
    fulfillment_center text NOT NULL,
    status             text NOT NULL
        CHECK (status IN ('available', 'in_transit', 'damaged', 'pending_return')),
    on_hand            integer NOT NULL CHECK (on_hand >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, fulfillment_center, status)
);

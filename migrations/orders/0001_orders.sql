-- The order history store. Written by checkout only (single writer per order: the instance
-- owning the order's partition), once the payment is secured; updated when the saga ends.
CREATE TABLE orders (
    order_id        text PRIMARY KEY,
    idempotency_key text NOT NULL,
    user_id         text NOT NULL,
    -- created (payment secured, stock being committed) | placed | failed
    status          text NOT NULL,
    currency        text NOT NULL,
    total_minor     bigint NOT NULL,
    payment_id      text NOT NULL,
    lines           jsonb NOT NULL,
    failure         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user ON orders (user_id, created_at);
CREATE INDEX orders_status ON orders (status) WHERE status <> 'placed';

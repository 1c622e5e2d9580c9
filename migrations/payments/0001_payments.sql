-- The payment service's own store: one row per payment (its current state, the gateway's
-- truth as last seen) and an append-only audit of every gateway call.
CREATE TABLE payments (
    payment_id        text PRIMARY KEY,
    order_id          text NOT NULL,
    amount_minor      bigint NOT NULL,
    currency          text NOT NULL,
    -- pending (asked, outcome unknown) | authorized | captured | declined | voided | refunded
    status            text NOT NULL,
    gateway_reference text,
    decline_code      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_order ON payments (order_id);

CREATE TABLE payment_attempts (
    id           bigserial PRIMARY KEY,
    payment_id   text NOT NULL,
    command_id   text NOT NULL,
    command_kind text NOT NULL,
    attempt      int NOT NULL,
    -- authorize | capture | void | refund | lookup
    operation    text NOT NULL,
    -- ok | declined | conflict | not_found | timeout | gateway_unavailable | rate_limited | breaker_open | gateway_error
    outcome      text NOT NULL,
    status_after text,
    detail       text,
    latency_ms   int NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_attempts_payment ON payment_attempts (payment_id, id);

-- The storefront's own database. API keys are stored hashed (SHA-256 of the key): the key is
-- shown once, when `fleet storefront keys create` makes it, and never stored in clear.
CREATE TABLE api_keys (
    key_hash   text PRIMARY KEY,
    client     text NOT NULL,
    -- The key's first characters, so an operator can name a key without holding it.
    prefix     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_client ON api_keys (client);

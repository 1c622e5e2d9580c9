-- image-quality's own database: the latest verdict per image (single writer per row: see
-- processors/image-quality/src/store.rs for why two instances cannot corrupt it).
CREATE TABLE image_verdicts (
    image_id      text PRIMARY KEY,
    product_id    text NOT NULL,
    url           text NOT NULL,
    status        text NOT NULL CHECK (status IN ('OK', 'REJECTED', 'NEEDS_MANUAL_REVIEW')),
    reasons       text[] NOT NULL DEFAULT '{}',
    width_px      integer,
    height_px     integer,
    content_type  text,
    size_bytes    bigint,
    blur_score    double precision,
    tier_thumbnail boolean,
    tier_zoom     boolean,
    tier_print    boolean,
    watermark_score double precision,
    attempts      integer NOT NULL,
    error_kind    text,
    error         text,
    checker_version text NOT NULL,
    -- The request this verdict answers (its occurred_at): an older request's verdict never
    -- replaces a newer one's.
    requested_at  timestamptz NOT NULL,
    checked_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX image_verdicts_by_product ON image_verdicts (product_id);

-- Products whose every checked image failed: flagged for a person to look at, never hidden.
CREATE VIEW products_for_review AS
SELECT product_id,
       count(*) AS images,
       array_agg(image_id ORDER BY image_id) AS image_ids
FROM image_verdicts
GROUP BY product_id
HAVING bool_and(status <> 'OK');

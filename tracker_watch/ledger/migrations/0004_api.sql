-- API access: bearer tokens, stored only as their SHA-256 (tokens are 256-bit random, so a fast hash
-- is enough: there is nothing to brute-force).

CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          text NOT NULL CHECK (role IN ('rightsholder', 'operator', 'isp')),
    token_hash    bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    holder_id     bigint REFERENCES rights_holders (id),
    isp           text REFERENCES isps (name),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CHECK ((role = 'rightsholder') = (holder_id IS NOT NULL)),
    CHECK ((role = 'isp') = (isp IS NOT NULL))
);

-- the API lists a target's evidence by time
CREATE INDEX observations_target_time ON observations (target_id, observed_at, id);
CREATE INDEX incidents_target ON incidents (target_id, id);

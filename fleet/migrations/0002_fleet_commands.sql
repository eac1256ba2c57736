-- depends: 0001_fleet_schema
-- Signed commands the fleet sent to sites, and each site's acknowledgement (docs/fleet.md).

CREATE TABLE fleet_commands (
    command_id  text NOT NULL,
    site        text NOT NULL,
    kind        text NOT NULL,             -- tariff | pass | list | open
    version     text,                      -- the tariff version sent (tariff only)
    issuer      text NOT NULL,
    reason      text NOT NULL,
    issued      timestamptz NOT NULL,
    expires     timestamptz NOT NULL,
    body        jsonb NOT NULL,
    PRIMARY KEY (command_id)
);
CREATE INDEX fleet_commands_site ON fleet_commands (site, issued);

-- What each site answered: applied, or refused with its reason. Written by the ingest
-- service from `parkguard/v1/{site}/fleet/ack`: one row per command, site and outcome, so a
-- replayed copy of an applied command shows as refused beside the applied row.
CREATE TABLE fleet_acks (
    command_id  text NOT NULL,
    site        text NOT NULL,
    kind        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('applied', 'refused')),
    reason      text NOT NULL DEFAULT '',
    version     text,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (command_id, site, status)
);

-- The tariff version each site last said it applied.
CREATE VIEW site_tariff_versions AS
    SELECT DISTINCT ON (site) site, version, command_id, ts
    FROM fleet_acks WHERE kind = 'tariff' AND status = 'applied'
    ORDER BY site, ts DESC;

-- depends: 0002_fleet_commands
-- The fleet dashboard's own people (docs/fleet.md, "The fleet dashboard"): a fleet_admin sees
-- every site, an operator only the sites assigned to them. Passwords are argon2 hashes.

CREATE TABLE fleet_users (
    username      text PRIMARY KEY CHECK (username ~ '^[a-z0-9_.-]{1,64}$'),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('fleet_admin', 'operator')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fleet_user_sites (
    username text NOT NULL REFERENCES fleet_users (username) ON DELETE CASCADE,
    site     text NOT NULL,
    PRIMARY KEY (username, site)
);

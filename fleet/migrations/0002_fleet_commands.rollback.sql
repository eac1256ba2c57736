DROP VIEW site_tariff_versions;
DROP TABLE fleet_acks;
DROP TABLE fleet_commands;

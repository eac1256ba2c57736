DROP TABLE fleet_user_sites;
DROP TABLE fleet_users;

-- 013_oauth.sql: OAuth2 grants of channels that log in with tokens (issue 14).
--
-- One row per channel. grant_kind is the grant the tokens come from
-- (client_credentials, jwt_bearer, device_code, auth_code). refresh_token
-- is the refresh token of a delegated grant sealed with AES-256-GCM under
-- the installation key "oauth-refresh-token" (nonce first, the channel
-- name as additional data); NULL for app-only grants, which need none.
-- expires_at is the expiry of the last access token, last_refresh when one
-- was last obtained. login_needed is set when the authorization server
-- refused the grant (invalid_grant): the channel waits for
-- `mailgate oauth login`, login_reason says why.
CREATE TABLE oauth_grants (
	channel       TEXT    NOT NULL PRIMARY KEY,
	grant_kind    TEXT    NOT NULL,
	refresh_token BLOB,
	expires_at    INTEGER NOT NULL DEFAULT 0,
	last_refresh  INTEGER NOT NULL DEFAULT 0,
	login_needed  INTEGER NOT NULL DEFAULT 0,
	login_reason  TEXT    NOT NULL DEFAULT '',
	updated_at    INTEGER NOT NULL
) WITHOUT ROWID;

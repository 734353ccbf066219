package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// OAuthGrant is the stored OAuth2 state of a channel, without its refresh
// token (see OAuthRefreshToken), so it can be printed and logged.
type OAuthGrant struct {
	Channel string `json:"channel"`
	// Kind is the grant: client_credentials, jwt_bearer, device_code or
	// auth_code.
	Kind string `json:"grant"`
	// HasRefreshToken reports whether a refresh token is stored.
	HasRefreshToken bool `json:"has_refresh_token"`
	// Expiry is when the last access token expires (or expired).
	Expiry time.Time `json:"expiry,omitzero"`
	// LastRefresh is when an access token was last obtained.
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	// LoginNeeded is set when the authorization server refused the grant;
	// LoginReason says how.
	LoginNeeded bool      `json:"login_needed"`
	LoginReason string    `json:"login_reason,omitempty"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// oauthKeyName is the installation key that seals refresh tokens.
const oauthKeyName = "oauth-refresh-token"

// oauthAEAD returns AES-256-GCM under the installation key.
func (db *DB) oauthAEAD(ctx context.Context) (cipher.AEAD, error) {
	key, err := db.InstallationKey(ctx, oauthKeyName, 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// oauthAD binds a sealed refresh token to its channel: a token copied to
// another channel's row does not open.
func oauthAD(channel string) []byte { return []byte("mailgate oauth refresh token\x00" + channel) }

// SaveOAuthLogin stores a channel's grant after a login or a refresh that
// rotated the refresh token: the new refresh token (sealed; "" keeps none),
// the access token's expiry, and now as the last refresh; it clears the
// login-needed flag. It returns only once the row is durable, so that a
// rotated refresh token is on disk before the access token that came with
// it is used.
func (db *DB) SaveOAuthLogin(ctx context.Context, channel, kind, refreshToken string, expiry time.Time) error {
	var sealed []byte
	if refreshToken != "" {
		aead, err := db.oauthAEAD(ctx)
		if err != nil {
			return fmt.Errorf("store: save OAuth2 grant of %q: %w", channel, err)
		}
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("store: save OAuth2 grant of %q: %w", channel, err)
		}
		sealed = aead.Seal(nonce, nonce, []byte(refreshToken), oauthAD(channel))
	}
	now := db.nowMS()
	err := db.tx(ctx, func(tx *sql.Tx) error {
		_, err := db.txExecOnce(ctx, tx, `INSERT INTO oauth_grants (channel, grant_kind, refresh_token, expires_at, last_refresh, login_needed, login_reason, updated_at)
			VALUES (?, ?, ?, ?, ?, 0, '', ?)
			ON CONFLICT (channel) DO UPDATE SET grant_kind = excluded.grant_kind, refresh_token = excluded.refresh_token,
				expires_at = excluded.expires_at, last_refresh = excluded.last_refresh, login_needed = 0, login_reason = '',
				updated_at = excluded.updated_at`,
			channel, kind, sealed, toMS(expiry), now, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: save OAuth2 grant of %q: %w", channel, err)
	}
	return nil
}

// OAuthRefreshed records that a channel obtained an access token without
// a new refresh token (app-only grants, or a server that does not rotate):
// its expiry and now as the last refresh. It clears the login-needed flag
// and keeps the refresh token.
func (db *DB) OAuthRefreshed(ctx context.Context, channel, kind string, expiry time.Time) error {
	now := db.nowMS()
	err := db.tx(ctx, func(tx *sql.Tx) error {
		_, err := db.txExecOnce(ctx, tx, `INSERT INTO oauth_grants (channel, grant_kind, expires_at, last_refresh, updated_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (channel) DO UPDATE SET grant_kind = excluded.grant_kind, expires_at = excluded.expires_at,
				last_refresh = excluded.last_refresh, login_needed = 0, login_reason = '', updated_at = excluded.updated_at`,
			channel, kind, toMS(expiry), now, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: record OAuth2 refresh of %q: %w", channel, err)
	}
	return nil
}

// SetOAuthLoginNeeded records that the authorization server refused a
// channel's grant, with the reason (never a token). The refresh token is
// kept: an operator may look at it, and a login replaces it.
func (db *DB) SetOAuthLoginNeeded(ctx context.Context, channel, kind, reason string) error {
	now := db.nowMS()
	err := db.tx(ctx, func(tx *sql.Tx) error {
		_, err := db.txExecOnce(ctx, tx, `INSERT INTO oauth_grants (channel, grant_kind, login_needed, login_reason, updated_at)
			VALUES (?, ?, 1, ?, ?)
			ON CONFLICT (channel) DO UPDATE SET login_needed = 1, login_reason = excluded.login_reason, updated_at = excluded.updated_at`,
			channel, kind, reason, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: record OAuth2 login needed for %q: %w", channel, err)
	}
	return nil
}

// OAuthGrant returns a channel's grant, or ErrNotFound when it has none.
func (db *DB) OAuthGrant(ctx context.Context, channel string) (*OAuthGrant, error) {
	g := &OAuthGrant{Channel: channel}
	var expiry, last, updated int64
	err := db.readQueryRowOnce(ctx, `SELECT grant_kind, refresh_token IS NOT NULL, expires_at, last_refresh, login_needed, login_reason, updated_at
		FROM oauth_grants WHERE channel = ?`, channel).Scan(&g.Kind, &g.HasRefreshToken, &expiry, &last, &g.LoginNeeded, &g.LoginReason, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: OAuth2 grant of %q: %w", channel, err)
	}
	g.Expiry, g.LastRefresh, g.UpdatedAt = fromMS(expiry), fromMS(last), fromMS(updated)
	return g, nil
}

// OAuthRefreshToken returns a channel's refresh token, opened, or
// ErrNotFound when none is stored. The token never appears in errors.
func (db *DB) OAuthRefreshToken(ctx context.Context, channel string) (string, error) {
	var sealed []byte
	err := db.readQueryRowOnce(ctx, `SELECT refresh_token FROM oauth_grants WHERE channel = ? AND refresh_token IS NOT NULL`, channel).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: refresh token of %q: %w", channel, err)
	}
	aead, err := db.oauthAEAD(ctx)
	if err != nil {
		return "", fmt.Errorf("store: refresh token of %q: %w", channel, err)
	}
	if len(sealed) < aead.NonceSize() {
		return "", fmt.Errorf("store: refresh token of %q: sealed value too short", channel)
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], oauthAD(channel))
	if err != nil {
		return "", fmt.Errorf("store: refresh token of %q does not decrypt under the installation key; run mailgate oauth login again", channel)
	}
	return string(plain), nil
}

// toMS converts t to unix milliseconds; the zero time is 0.
func toMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOAuthGrant(t *testing.T) { forEachBackend(t, testOAuthGrant) }

func testOAuthGrant(t *testing.T) {
	ctx := context.Background()
	db, clk := openTest(t)

	if _, err := db.OAuthGrant(ctx, "support"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no grant: err = %v", err)
	}
	if _, err := db.OAuthRefreshToken(ctx, "support"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no refresh token: err = %v", err)
	}

	expiry := clk.Now().Add(time.Hour)
	if err := db.SaveOAuthLogin(ctx, "support", "device_code", "rt-one-s3cret", expiry); err != nil {
		t.Fatal(err)
	}
	rt, err := db.OAuthRefreshToken(ctx, "support")
	if err != nil || rt != "rt-one-s3cret" {
		t.Fatalf("refresh token = %q, %v", rt, err)
	}
	g, err := db.OAuthGrant(ctx, "support")
	if err != nil {
		t.Fatal(err)
	}
	want := OAuthGrant{Channel: "support", Kind: "device_code", HasRefreshToken: true, Expiry: expiry.Truncate(time.Millisecond),
		LastRefresh: clk.Now(), UpdatedAt: clk.Now()}
	if !g.Expiry.Equal(want.Expiry) || !g.LastRefresh.Equal(want.LastRefresh) || g.Kind != want.Kind || !g.HasRefreshToken || g.LoginNeeded {
		t.Errorf("grant = %+v, want %+v", g, want)
	}

	// The token is sealed: the column holds neither it nor any part of it.
	var sealed []byte
	if err := db.readQueryRowOnce(ctx, `SELECT refresh_token FROM oauth_grants WHERE channel = 'support'`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("s3cret")) || bytes.Contains(sealed, []byte("rt-one")) {
		t.Fatalf("refresh token stored in the clear: %q", sealed)
	}
	// ... and bound to its channel.
	if _, err := db.writeExec(ctx, `INSERT INTO oauth_grants (channel, grant_kind, refresh_token, updated_at) VALUES ('other', 'device_code', ?, 0)`, sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := db.OAuthRefreshToken(ctx, "other"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("a token moved to another channel opens: %v", err)
	}

	// Refused: login needed, the token is kept.
	clk.Add(time.Minute)
	if err := db.SetOAuthLoginNeeded(ctx, "support", "device_code", "invalid_grant: token revoked"); err != nil {
		t.Fatal(err)
	}
	g, _ = db.OAuthGrant(ctx, "support")
	if !g.LoginNeeded || g.LoginReason != "invalid_grant: token revoked" || !g.HasRefreshToken {
		t.Errorf("after refusal: %+v", g)
	}
	// A new login replaces the token and clears the flag.
	clk.Add(time.Minute)
	if err := db.SaveOAuthLogin(ctx, "support", "device_code", "rt-two", expiry); err != nil {
		t.Fatal(err)
	}
	g, _ = db.OAuthGrant(ctx, "support")
	if g.LoginNeeded || g.LoginReason != "" || !g.LastRefresh.Equal(clk.Now()) {
		t.Errorf("after login: %+v", g)
	}
	if rt, _ := db.OAuthRefreshToken(ctx, "support"); rt != "rt-two" {
		t.Errorf("refresh token after login = %q", rt)
	}

	// A refresh without rotation keeps the token.
	clk.Add(time.Minute)
	if err := db.OAuthRefreshed(ctx, "support", "device_code", expiry.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if rt, _ := db.OAuthRefreshToken(ctx, "support"); rt != "rt-two" {
		t.Errorf("refresh token after a plain refresh = %q", rt)
	}
	g, _ = db.OAuthGrant(ctx, "support")
	if !g.LastRefresh.Equal(clk.Now()) || !g.Expiry.Equal(expiry.Add(time.Hour).Truncate(time.Millisecond)) {
		t.Errorf("after refresh: %+v", g)
	}

	// App-only grants have no refresh token.
	if err := db.OAuthRefreshed(ctx, "app", "client_credentials", expiry); err != nil {
		t.Fatal(err)
	}
	if g, err := db.OAuthGrant(ctx, "app"); err != nil || g.HasRefreshToken || g.Kind != "client_credentials" {
		t.Errorf("app-only grant = %+v, %v", g, err)
	}
	if _, err := db.OAuthRefreshToken(ctx, "app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("app-only refresh token: %v", err)
	}
}

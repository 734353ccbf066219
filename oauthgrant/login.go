package oauthgrant

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"mailgate/config"
	"mailgate/oauthtoken"
	"mailgate/store"
)

// LoginOptions configure Login.
type LoginOptions struct {
	// Channel and Config say whose grant to obtain.
	Channel string
	Config  config.OAuth2
	// DB receives the grant.
	DB *store.DB
	// Out receives the instructions for the person logging in.
	Out io.Writer
	// In is where, in the authorization code flow, the person may paste
	// the address the browser was sent to after the login, when the
	// browser runs on another machine than mailgate. Nil: wait for the
	// browser to reach the loopback listener.
	In io.Reader
	// HTTPClient talks to the authorization server; nil means a client
	// with DefaultHTTPTimeout.
	HTTPClient *http.Client
}

// Login obtains the channel's grant once and stores it: the device code
// flow (RFC 8628) or the authorization code flow with PKCE and a loopback
// redirect (RFC 8252) for delegated grants, one token request for app-only
// grants (which need no login; this checks they work). It clears a
// login-needed state; a running daemon resumes with the new grant at its
// next connection attempt.
func Login(ctx context.Context, opts LoginOptions) (*store.OAuthGrant, error) {
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	grant := opts.Config.Grant()
	if !grant.Delegated() {
		src, err := New(Options{Channel: opts.Channel, Config: opts.Config, DB: opts.DB, HTTPClient: hc})
		if err != nil {
			return nil, err
		}
		if _, err := src.Token(ctx); err != nil {
			return nil, err
		}
		fmt.Fprintf(opts.Out, "channel %q uses an app-only grant (%s): no login needed; a token was obtained\n", opts.Channel, grant)
		return opts.DB.OAuthGrant(ctx, opts.Channel)
	}

	octx := context.WithValue(ctx, oauth2.HTTPClient, hc)
	cfg := OAuth2Config(opts.Config)
	var tok *oauth2.Token
	var err error
	switch grant {
	case config.GrantDeviceCode:
		tok, err = oauthtoken.DeviceLogin(octx, cfg, func(da *oauth2.DeviceAuthResponse) error {
			fmt.Fprintf(opts.Out, "To log channel %q in, open\n\n    %s\n\nand enter the code\n\n    %s\n\n", opts.Channel, da.VerificationURI, da.UserCode)
			if da.VerificationURIComplete != "" {
				fmt.Fprintf(opts.Out, "(or open %s)\n\n", da.VerificationURIComplete)
			}
			fmt.Fprintf(opts.Out, "Waiting for the login...\n")
			return nil
		})
	case config.GrantAuthCode:
		tok, err = oauthtoken.AuthCodeLogin(octx, cfg, func(authURL string) error {
			redirect, err := redirectURI(authURL)
			if err != nil {
				return err
			}
			fmt.Fprintf(opts.Out, "To log channel %q in, open this address in a browser:\n\n    %s\n\n", opts.Channel, authURL)
			fmt.Fprintf(opts.Out, "After the login the browser is sent to %s... If that browser runs on another\n"+
				"machine, the page will not load: copy the address from its address bar and paste it here.\n", redirect)
			if opts.In != nil {
				go relayPasted(octx, hc, opts.In, redirect)
			}
			return nil
		})
	default:
		return nil, fmt.Errorf("oauthgrant: grant %q has no login", grant)
	}
	if err != nil {
		return nil, fmt.Errorf("oauth2: channel %q: login: %s", opts.Channel, Describe(err))
	}
	if tok.RefreshToken == "" {
		return nil, fmt.Errorf("oauth2: channel %q: the authorization server returned no refresh token (Microsoft needs the scope offline_access; Google a consent with access_type=offline)", opts.Channel)
	}
	if err := opts.DB.SaveOAuthLogin(ctx, opts.Channel, string(grant), tok.RefreshToken, tok.Expiry); err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Out, "channel %q is logged in; the refresh token is stored (encrypted) in %s\n", opts.Channel, opts.DB.Path())
	return opts.DB.OAuthGrant(ctx, opts.Channel)
}

// redirectURI returns the redirect_uri of an authorization URL.
func redirectURI(authURL string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("oauthgrant: authorization URL: %w", err)
	}
	r := u.Query().Get("redirect_uri")
	if r == "" {
		return "", errors.New("oauthgrant: authorization URL without redirect_uri")
	}
	return r, nil
}

// relayPasted reads lines from in until one is the loopback redirect
// (the address a browser on another machine could not open) and delivers it
// to the loopback listener of AuthCodeLogin, as the browser would have.
func relayPasted(ctx context.Context, hc *http.Client, in io.Reader, redirect string) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || !strings.HasPrefix(line, redirect) {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, line, nil)
		if err != nil {
			continue
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusForbidden {
			return // the listener took it (a login or a refusal)
		}
	}
}

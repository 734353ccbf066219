package config

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
)

// OAuth2Provider is the value of [channel.oauth2] provider.
type OAuth2Provider string

// The providers. The zero value means the channel logs in with passwords.
const (
	OAuth2Microsoft OAuth2Provider = "microsoft" // Microsoft Entra ID (Exchange Online)
	OAuth2Google    OAuth2Provider = "google"    // Google Workspace, Gmail
	OAuth2Generic   OAuth2Provider = "generic"   // any other OAuth2 server, endpoints given
)

// OAuth2Mode is the value of [channel.oauth2] mode.
type OAuth2Mode string

// The modes.
const (
	// OAuth2AppOnly: the application acts on its own (Entra ID client
	// credentials, a Google service account with domain-wide delegation);
	// no person logs in. The default.
	OAuth2AppOnly OAuth2Mode = "app-only"
	// OAuth2Delegated: a person logs in once with `mailgate oauth login`
	// and mailgate keeps the refresh token.
	OAuth2Delegated OAuth2Mode = "delegated"
)

// OAuth2Grant names the OAuth2 grant a channel's tokens come from.
type OAuth2Grant string

// The grants.
const (
	GrantClientCredentials OAuth2Grant = "client_credentials" // RFC 6749 section 4.4
	GrantJWTBearer         OAuth2Grant = "jwt_bearer"         // RFC 7523
	GrantDeviceCode        OAuth2Grant = "device_code"        // RFC 8628
	GrantAuthCode          OAuth2Grant = "auth_code"          // RFC 6749 section 4.1 with PKCE (RFC 7636)
)

// Delegated reports whether the grant needs a person to log in once (and
// yields a refresh token).
func (g OAuth2Grant) Delegated() bool { return g == GrantDeviceCode || g == GrantAuthCode }

// OAuth2 is [channel.oauth2]: the channel logs in to IMAP and SMTP with
// OAuth2 access tokens (SASL OAUTHBEARER or XOAUTH2) instead of passwords.
// The endpoints and scopes are resolved from the provider, so users of the
// struct never look at Provider to find them.
type OAuth2 struct {
	// Provider is "microsoft", "google" or "generic"; empty when the
	// channel has no [channel.oauth2].
	Provider OAuth2Provider `toml:"provider"`
	// Mode is "app-only" (default) or "delegated".
	Mode OAuth2Mode `toml:"mode" default:"'app-only'"`
	// Tenant is the Entra ID tenant (microsoft): a GUID or a domain.
	Tenant string `toml:"tenant"`
	// ClientID is the application (client) ID.
	ClientID string `toml:"client_id"`
	// ClientSecret is the client secret, if the application has one.
	ClientSecret Secret `toml:"client_secret"`
	// ServiceAccountKey is a Google service account's JSON key (google,
	// app-only).
	ServiceAccountKey Secret `toml:"service_account_key"`
	// Subject is the mailbox a Google service account acts for (default
	// imap.username).
	Subject string `toml:"subject"`
	// TokenURL, AuthURL and DeviceURL are the token, authorization and
	// device authorization endpoints; set from the provider unless it is
	// "generic". AuthURL and DeviceURL may be empty.
	TokenURL  string `toml:"token_url"`
	AuthURL   string `toml:"auth_url"`
	DeviceURL string `toml:"device_url"`
	// Scopes are requested with every token (provider defaults unless
	// given).
	Scopes []string `toml:"scopes"`
}

// Enabled reports whether the channel logs in with OAuth2.
func (o OAuth2) Enabled() bool { return o.Provider != "" }

// Grant is the grant the channel's tokens come from.
func (o OAuth2) Grant() OAuth2Grant {
	switch {
	case o.Mode != OAuth2Delegated && o.Provider == OAuth2Google:
		return GrantJWTBearer
	case o.Mode != OAuth2Delegated:
		return GrantClientCredentials
	case o.Provider == OAuth2Google, o.Provider == OAuth2Generic && o.DeviceURL == "":
		return GrantAuthCode
	}
	return GrantDeviceCode
}

// Well-known endpoints and scopes.
const (
	microsoftLogin     = "https://login.microsoftonline.com/"
	microsoftAppScope  = "https://outlook.office365.com/.default"
	googleAuthURL      = "https://accounts.google.com/o/oauth2/auth"
	googleTokenURL     = "https://oauth2.googleapis.com/token"
	googleMailScope    = "https://mail.google.com/"
	serviceAccountType = "service_account"
)

// microsoftDelegatedScopes are what a delegated Exchange Online login asks
// for: IMAP, SMTP AUTH, and a refresh token.
var microsoftDelegatedScopes = []string{
	"https://outlook.office365.com/IMAP.AccessAsUser.All",
	"https://outlook.office365.com/SMTP.Send",
	"offline_access",
}

// ServiceAccount is what the JWT bearer grant needs of a Google service
// account JSON key.
type ServiceAccount struct {
	ClientEmail  string
	PrivateKeyID string
	PrivateKey   Secret // PEM
	TokenURI     string
}

// ParseServiceAccount reads a Google service account JSON key. Errors never
// quote the key.
func ParseServiceAccount(key Secret) (ServiceAccount, error) {
	var k struct {
		Type         string `json:"type"`
		ClientEmail  string `json:"client_email"`
		PrivateKeyID string `json:"private_key_id"`
		PrivateKey   string `json:"private_key"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal([]byte(key.Reveal()), &k); err != nil {
		return ServiceAccount{}, errors.New("not a JSON service account key (download it under IAM > Service accounts > Keys)")
	}
	if k.Type != serviceAccountType || k.ClientEmail == "" || k.PrivateKey == "" {
		return ServiceAccount{}, errors.New(`not a service account key: want "type": "service_account" with client_email and private_key`)
	}
	if k.TokenURI == "" {
		k.TokenURI = googleTokenURL
	}
	return ServiceAccount{ClientEmail: k.ClientEmail, PrivateKeyID: k.PrivateKeyID, PrivateKey: NewSecret(k.PrivateKey), TokenURI: k.TokenURI}, nil
}

// setKey returns the key a secret of the table m was given under: name,
// name_file or name_credential.
func setKey(t at, name string, m map[string]any) at {
	for _, s := range secretSuffixes[1:] {
		if _, ok := m[name+s]; ok {
			return t.key(name + s)
		}
	}
	return t.key(name)
}

// resolveOAuth2 checks the converted [channel.oauth2] o (the decoded table
// m at t) and resolves the provider's endpoints and scopes.
func (p *parser) resolveOAuth2(t at, m map[string]any, o *OAuth2) {
	set := func(key string) bool {
		for _, s := range secretSuffixes {
			if _, ok := m[key+s]; ok {
				return true
			}
		}
		return false
	}
	if !set("provider") {
		p.errorf(t.key("provider"), `missing (want "microsoft", "google" or "generic")`)
		return
	}
	if p.isBad(t.key("provider")) {
		return
	}
	oneOf(p, t.key("provider"), o.Provider, OAuth2Microsoft, OAuth2Google, OAuth2Generic)
	oneOf(p, t.key("mode"), o.Mode, OAuth2AppOnly, OAuth2Delegated)
	p.list(t.key("scopes"), o.Scopes, "scope")

	// Keys that belong to another provider or mode are refused rather
	// than silently ignored.
	refuse := func(key, msg string, refused bool) {
		if set(key) && refused {
			p.errorf(t.key(key), "%s", msg)
			p.markBad(t.key(key))
		}
	}
	only := func(key, with string, allowed bool) { refuse(key, "only allowed with "+with, !allowed) }
	only("tenant", `provider = "microsoft"`, o.Provider == OAuth2Microsoft)
	only("service_account_key", `provider = "google" and mode = "app-only"`, o.Provider == OAuth2Google && o.Mode == OAuth2AppOnly)
	only("subject", `provider = "google" and mode = "app-only"`, o.Provider == OAuth2Google && o.Mode == OAuth2AppOnly)
	for _, k := range []string{"token_url", "auth_url", "device_url"} {
		only(k, `provider = "generic" (the other providers have fixed endpoints)`, o.Provider == OAuth2Generic)
	}
	appGoogle := o.Provider == OAuth2Google && o.Mode == OAuth2AppOnly
	for _, k := range []string{"client_id", "client_secret"} {
		refuse(k, `not used with provider = "google" and mode = "app-only" (the service account key identifies the app)`, appGoogle)
	}

	require := func(key, what string, v string) {
		if v == "" && !p.isBad(t.key(key)) {
			p.errorf(t.key(key), "missing (%s)", what)
		}
	}
	requireSecret := func(name string, s Secret) {
		if s.IsZero() && !p.isBad(t.key(name)) {
			p.errorf(t.key(name), "missing (set %s, %s_file or %s_credential)", name, name, name)
		}
	}
	switch o.Provider {
	case OAuth2Microsoft:
		require("tenant", "the Directory (tenant) ID or domain of the Entra ID app registration", o.Tenant)
		require("client_id", "the Application (client) ID of the app registration", o.ClientID)
		if o.Tenant != "" && !validTenant(o.Tenant) {
			p.errorf(t.key("tenant"), "invalid tenant %q: want a GUID or a domain", o.Tenant)
		}
		base := microsoftLogin + url.PathEscape(o.Tenant) + "/oauth2/v2.0/"
		o.TokenURL = base + "token"
		if o.Mode == OAuth2AppOnly {
			requireSecret("client_secret", o.ClientSecret)
			defScopes(o, microsoftAppScope)
		} else {
			o.AuthURL, o.DeviceURL = base+"authorize", base+"devicecode"
			defScopes(o, microsoftDelegatedScopes...)
		}
	case OAuth2Google:
		o.TokenURL = googleTokenURL
		defScopes(o, googleMailScope)
		if o.Mode == OAuth2AppOnly {
			requireSecret("service_account_key", o.ServiceAccountKey)
			if !o.ServiceAccountKey.IsZero() {
				sa, err := ParseServiceAccount(o.ServiceAccountKey)
				if err != nil {
					p.errorf(setKey(t, "service_account_key", m), "%v", err)
				} else {
					o.TokenURL = sa.TokenURI
				}
			}
		} else {
			o.AuthURL = googleAuthURL
			require("client_id", "the OAuth client ID of a Desktop app client in Google Cloud", o.ClientID)
		}
	case OAuth2Generic:
		require("client_id", "the client ID registered at the authorization server", o.ClientID)
		require("token_url", "the token endpoint", o.TokenURL)
		for _, k := range []struct {
			key, v string
		}{{"token_url", o.TokenURL}, {"auth_url", o.AuthURL}, {"device_url", o.DeviceURL}} {
			if k.v != "" {
				p.httpURL(t.key(k.key), k.v, true)
			}
		}
		if o.Mode == OAuth2AppOnly {
			requireSecret("client_secret", o.ClientSecret)
		} else if o.DeviceURL == "" && o.AuthURL == "" {
			p.errorf(t.key("device_url"), "missing (mode = \"delegated\" needs device_url or auth_url)")
		}
	}
}

// defScopes sets the scopes unless the file gives them.
func defScopes(o *OAuth2, scopes ...string) {
	if len(o.Scopes) == 0 {
		o.Scopes = append([]string(nil), scopes...)
	}
}

// validTenant accepts what may stand in the Entra ID login URL: a tenant
// GUID, a domain, or "organizations".
func validTenant(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return s != "" && s != "." && s != ".."
}

// oauth2Summary describes o for check-config, without secrets.
func oauth2Summary(o OAuth2) string {
	s := "; oauth2 " + string(o.Provider) + " " + string(o.Mode) + " (" + string(o.Grant()) + ")"
	if o.Subject != "" {
		s += " subject=" + o.Subject
	}
	return s + " scopes=" + strings.Join(o.Scopes, ",")
}

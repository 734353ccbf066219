package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// oauthBase is minimal without imap.password (12 lines), followed by the
// [channel.oauth2] header on line 13; the keys of a test start on line 14.
var oauthBase = strings.Replace(minimal, "password = \"imap-pass-s3cret\"\n", "", 1) + "[channel.oauth2]\n"

func TestOAuth2(t *testing.T) {
	dir := t.TempDir()
	saKey := filepath.Join(dir, "sa.json")
	if err := os.WriteFile(saKey, []byte(`{"type":"service_account","client_email":"mailgate@proj.iam.gserviceaccount.com",
"private_key_id":"k1","private_key":"-----BEGIN PRIVATE KEY-----\nsa-key-s3cret\n-----END PRIVATE KEY-----\n","token_uri":"http://127.0.0.1:9/token"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		src       string
		grant     OAuth2Grant
		tokenURL  string
		deviceURL string
		scopes    []string
		subject   string
	}{{
		name:     "microsoft app-only",
		src:      "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"abc\"\nclient_secret = \"cs-s3cret\"\n",
		grant:    GrantClientCredentials,
		tokenURL: "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
		scopes:   []string{"https://outlook.office365.com/.default"},
	}, {
		name:      "microsoft delegated, public client",
		src:       "provider = \"microsoft\"\nmode = \"delegated\"\ntenant = \"organizations\"\nclient_id = \"abc\"\n",
		grant:     GrantDeviceCode,
		tokenURL:  "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
		deviceURL: "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode",
		scopes:    microsoftDelegatedScopes,
	}, {
		name:     "google service account",
		src:      "provider = \"google\"\nservice_account_key_file = \"" + saKey + "\"\n",
		grant:    GrantJWTBearer,
		tokenURL: "http://127.0.0.1:9/token",
		scopes:   []string{"https://mail.google.com/"},
		subject:  "support@example.com",
	}, {
		name:     "google delegated",
		src:      "provider = \"google\"\nmode = \"delegated\"\nclient_id = \"x.apps.googleusercontent.com\"\nclient_secret = \"g\"\n",
		grant:    GrantAuthCode,
		tokenURL: "https://oauth2.googleapis.com/token",
		scopes:   []string{"https://mail.google.com/"},
	}, {
		name:      "generic device code",
		src:       "provider = \"generic\"\nmode = \"delegated\"\nclient_id = \"c\"\ntoken_url = \"http://127.0.0.1:1/token\"\ndevice_url = \"http://127.0.0.1:1/device\"\nscopes = [\"mail\"]\n",
		grant:     GrantDeviceCode,
		tokenURL:  "http://127.0.0.1:1/token",
		deviceURL: "http://127.0.0.1:1/device",
		scopes:    []string{"mail"},
	}, {
		name:     "generic auth code",
		src:      "provider = \"generic\"\nmode = \"delegated\"\nclient_id = \"c\"\ntoken_url = \"http://127.0.0.1:1/token\"\nauth_url = \"http://127.0.0.1:1/authorize\"\n",
		grant:    GrantAuthCode,
		tokenURL: "http://127.0.0.1:1/token",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", []byte(oauthBase+tt.src), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			ch := cfg.Channels[0]
			o := ch.OAuth2
			if !o.Enabled() || o.Grant() != tt.grant {
				t.Errorf("grant %q, want %q", o.Grant(), tt.grant)
			}
			if o.TokenURL != tt.tokenURL || o.DeviceURL != tt.deviceURL {
				t.Errorf("endpoints %q %q, want %q %q", o.TokenURL, o.DeviceURL, tt.tokenURL, tt.deviceURL)
			}
			if !slices.Equal(o.Scopes, tt.scopes) {
				t.Errorf("scopes %q, want %q", o.Scopes, tt.scopes)
			}
			if o.Subject != tt.subject {
				t.Errorf("subject %q, want %q", o.Subject, tt.subject)
			}
			if ch.SMTP.Username != "support@example.com" {
				t.Errorf("smtp username %q, want the imap username", ch.SMTP.Username)
			}
			if !ch.Equal(ch) {
				t.Error("channel not equal to itself")
			}
			other := ch
			other.OAuth2.Scopes = append([]string{"x"}, o.Scopes...)
			if ch.Equal(other) {
				t.Error("a scope change is not a change")
			}
			sum := strings.Join(cfg.Summary(), "\n")
			if !strings.Contains(sum, "oauth2 "+string(o.Provider)) || strings.Contains(sum, "s3cret") {
				t.Errorf("summary %q", sum)
			}
		})
	}
}

func TestOAuth2Errors(t *testing.T) {
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badKey, []byte(`{"type":"authorized_user","private_key":"sa-key-s3cret"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ms := "provider = \"microsoft\"\ntenant = \"t\"\nclient_id = \"c\"\nclient_secret = \"cs-s3cret\"\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{{
		name: "imap password with oauth2",
		src:  strings.Replace(minimal, "[channel.smtp]\n", "[channel.smtp]\npassword_file = \"/nonexistent\"\n", 1) + "[channel.oauth2]\n" + ms,
		want: []string{
			`c.toml:10: channel "support": imap.password: not allowed with [channel.oauth2]: the channel logs in with OAuth2 tokens`,
			`c.toml:12: channel "support": smtp.password_file: not allowed with [channel.oauth2]: the channel logs in with OAuth2 tokens`,
		},
	}, {
		name: "missing provider",
		src:  oauthBase + "client_id = \"c\"\n",
		want: []string{`c.toml:13: channel "support": oauth2.provider: missing (want "microsoft", "google" or "generic")`},
	}, {
		name: "unknown provider",
		src:  oauthBase + "provider = \"yahoo\"\nclient_id = \"c\"\n",
		want: []string{`c.toml:14: channel "support": oauth2.provider: invalid value "yahoo" (want "microsoft", "google", "generic")`},
	}, {
		name: "microsoft app-only needs a secret and a tenant",
		src:  oauthBase + "provider = \"microsoft\"\nclient_id = \"c\"\nmode = \"app\"\n",
		want: []string{
			`c.toml:13: channel "support": oauth2.tenant: missing (the Directory (tenant) ID or domain of the Entra ID app registration)`,
			`c.toml:16: channel "support": oauth2.mode: invalid value "app" (want "app-only", "delegated")`,
		},
	}, {
		name: "keys of another provider",
		src:  oauthBase + "provider = \"google\"\ntenant = \"t\"\ntoken_url = \"https://x.test/t\"\nclient_id = \"c\"\nservice_account_key_file = \"" + badKey + "\"\n",
		want: []string{
			`c.toml:15: channel "support": oauth2.tenant: only allowed with provider = "microsoft"`,
			`c.toml:16: channel "support": oauth2.token_url: only allowed with provider = "generic" (the other providers have fixed endpoints)`,
			`c.toml:17: channel "support": oauth2.client_id: not used with provider = "google" and mode = "app-only" (the service account key identifies the app)`,
			`c.toml:18: channel "support": oauth2.service_account_key_file: not a service account key: want "type": "service_account" with client_email and private_key`,
		},
	}, {
		name: "generic without endpoints",
		src:  oauthBase + "provider = \"generic\"\nmode = \"delegated\"\nclient_id = \"c\"\n",
		want: []string{
			`c.toml:13: channel "support": oauth2.token_url: missing (the token endpoint)`,
			`c.toml:13: channel "support": oauth2.device_url: missing (mode = "delegated" needs device_url or auth_url)`,
		},
	}, {
		name: "tenant injection",
		src:  oauthBase + "provider = \"microsoft\"\nmode = \"delegated\"\ntenant = \"a/../b\"\nclient_id = \"c\"\n",
		want: []string{`c.toml:16: channel "support": oauth2.tenant: invalid tenant "a/../b": want a GUID or a domain`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.src), noEnv)
			got := errorLines(err)
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

func TestOAuth2SecretSyntaxError(t *testing.T) {
	_, err := Parse("c.toml", []byte(oauthBase+"provider = \"generic\"\nclient_secret = \"cs-s3cret\n"), noEnv)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "c.toml:15") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzParseServiceAccount: any key file either parses into a usable
// account or fails with an error that quotes none of it.
func FuzzParseServiceAccount(f *testing.F) {
	f.Add(`{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"KEYMATERIAL","token_uri":"https://oauth2.googleapis.com/token"}`)
	f.Add(`{"type":"authorized_user","private_key":"KEYMATERIAL"}`)
	f.Add(`{"type":"service_account","client_email":"","private_key":"KEYMATERIAL"`)
	f.Add("KEYMATERIAL")
	f.Fuzz(func(t *testing.T, s string) {
		sa, err := ParseServiceAccount(NewSecret(s))
		if err != nil {
			if len(s) >= 8 && strings.Contains(err.Error(), s) {
				t.Fatalf("error quotes the key file: %v", err)
			}
			if strings.Contains(s, "KEYMATERIAL") && strings.Contains(err.Error(), "KEYMATERIAL") {
				t.Fatalf("error quotes key material: %v", err)
			}
			return
		}
		if sa.ClientEmail == "" || sa.PrivateKey.IsZero() || sa.TokenURI == "" {
			t.Fatalf("parsed without email, key or token URI: %+v", sa)
		}
	})
}

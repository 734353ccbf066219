package oauthsasl

import (
	"errors"
	"strings"
	"testing"
)

func TestXOAuth2Start(t *testing.T) {
	c := NewXOAuth2Client("support@example.com", "tok123")
	mech, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	if mech != "XOAUTH2" {
		t.Errorf("mech = %q", mech)
	}
	want := "user=support@example.com\x01auth=Bearer tok123\x01\x01"
	if string(ir) != want {
		t.Errorf("ir = %q, want %q", ir, want)
	}
}

func TestXOAuth2ErrorChallenge(t *testing.T) {
	tests := []struct {
		name      string
		challenge string
		wantErr   bool
		status    string
	}{
		{"json error", `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`, false, "401"},
		{"garbage", `not json`, true, ""},
		{"empty", ``, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewXOAuth2Client("u", "secret-token").(*xoauth2Client)
			resp, err := c.Next([]byte(tt.challenge))
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				if strings.Contains(err.Error(), "secret-token") {
					t.Errorf("error leaks the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp == nil || len(resp) != 0 {
				t.Errorf("response = %q, want empty non-nil", resp)
			}
			var xe *XOAuth2Error
			if !errors.As(c.err, &xe) || xe.Status != tt.status {
				t.Errorf("recorded error = %v", c.err)
			}
			if strings.Contains(c.err.Error(), "secret-token") {
				t.Errorf("error leaks the token")
			}
		})
	}
}

func TestChoose(t *testing.T) {
	cred := Credentials{Username: "a@example.com", Token: "T", Host: "imap.example.com", Port: 993}
	tests := []struct {
		name       string
		advertised []string
		wantMech   string
		wantIR     string
	}{
		{"both prefers oauthbearer", []string{"PLAIN", "XOAUTH2", "OAUTHBEARER"}, "OAUTHBEARER",
			"n,a=a@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer T\x01\x01"},
		{"xoauth2 only", []string{"PLAIN", "LOGIN", "XOAUTH2"}, "XOAUTH2",
			"user=a@example.com\x01auth=Bearer T\x01\x01"},
		{"lower case", []string{"xoauth2"}, "XOAUTH2", "user=a@example.com\x01auth=Bearer T\x01\x01"},
		{"none", []string{"PLAIN", "LOGIN"}, "", ""},
		{"nothing advertised", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Choose(tt.advertised, cred)
			if tt.wantMech == "" {
				if !errors.Is(err, ErrNoMechanism) {
					t.Fatalf("err = %v, want ErrNoMechanism", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mech, ir, err := c.Start()
			if err != nil {
				t.Fatal(err)
			}
			if mech != tt.wantMech || string(ir) != tt.wantIR {
				t.Errorf("got %q %q, want %q %q", mech, ir, tt.wantMech, tt.wantIR)
			}
		})
	}
}

func TestOAuthBearerErrorChallenge(t *testing.T) {
	c, err := Choose([]string{"OAUTHBEARER"}, Credentials{Username: "u", Token: "secret-token"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Next([]byte(`{"status":"invalid_token","schemes":"bearer"}`))
	if err != nil || string(resp) != "\x01" {
		t.Fatalf("error challenge: resp %q err %v, want %q", resp, err, "\x01")
	}
	if _, err := c.Next([]byte("garbage")); err == nil || strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("garbage challenge: %v", err)
	}
}

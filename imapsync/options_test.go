package imapsync

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// nopStore is a Handler and CursorStore that does nothing.
type nopStore struct{}

func (nopStore) Cursor(context.Context, string) (Cursor, error)    { return Cursor{}, nil }
func (nopStore) StartFolder(context.Context, string, Cursor) error { return nil }
func (nopStore) Handle(context.Context, *Message) error            { return nil }
func (nopStore) UIDValidityChanged(context.Context, string, uint32, uint32) error {
	return nil
}

func validOptions() Options {
	return Options{
		Channel: "support",
		Address: "imap.example.test:993",
		Auth:    PasswordAuth{Username: "u", Password: "p"},
		Folders: []string{"INBOX"},
		Cursors: nopStore{},
		Handler: nopStore{},
	}
}

func TestNewWatcherValidation(t *testing.T) {
	tests := []struct {
		name    string
		change  func(o *Options)
		wantErr string // empty: valid
	}{
		{"valid", func(o *Options) {}, ""},
		{"no channel", func(o *Options) { o.Channel = "" }, "Channel is empty"},
		{"address without port", func(o *Options) { o.Address = "imap.example.test" }, "address"},
		{"bad security", func(o *Options) { o.Security = "ssl" }, `unknown security "ssl"`},
		{"starttls", func(o *Options) { o.Security = SecurityStartTLS }, ""},
		{"no auth", func(o *Options) { o.Auth = nil }, "Auth is nil"},
		{"no folders", func(o *Options) { o.Folders = nil }, "no folders"},
		{"empty folder", func(o *Options) { o.Folders = []string{""} }, "empty folder"},
		{"duplicate folder", func(o *Options) { o.Folders = []string{"INBOX", "INBOX"} }, "listed twice"},
		{"no cursors", func(o *Options) { o.Cursors = nil }, "Cursors is nil"},
		{"no handler", func(o *Options) { o.Handler = nil }, "Handler is nil"},
		{"negative poll", func(o *Options) { o.PollInterval = -time.Second }, "negative PollInterval"},
		{"min over max", func(o *Options) { o.MinBackoff, o.MaxBackoff = time.Minute, time.Second }, "exceeds MaxBackoff"},
		{"negative size", func(o *Options) { o.MaxMessageSize = -1 }, "negative MaxMessageSize"},
		{"negative batch", func(o *Options) { o.BatchSize = -1 }, "negative BatchSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOptions()
			tt.change(&o)
			_, err := NewWatcher(o)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewWatcher: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("NewWatcher accepted invalid options")
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	w, err := NewWatcher(validOptions())
	if err != nil {
		t.Fatal(err)
	}
	o := w.opts
	if o.Security != SecurityTLS || o.PollInterval != DefaultPollInterval || o.IdleRefresh != DefaultIdleRefresh ||
		o.BatchSize != DefaultBatchSize || o.MinBackoff != DefaultMinBackoff || o.MaxBackoff != DefaultMaxBackoff ||
		o.Logger == nil || o.Dial == nil {
		t.Fatalf("defaults not applied: %+v", o)
	}
	if s := w.State(); s.Connected || s.Attempted || s.AuthFailed || !s.LastSync.IsZero() {
		t.Fatalf("initial state %+v", s)
	}
}

func TestPasswordNeverPrinted(t *testing.T) {
	a := PasswordAuth{Username: "alice", Password: "hunter2-secret"}
	for _, s := range []string{fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s", a, a, a, a), a.LogValue().String()} {
		if strings.Contains(s, "hunter2-secret") {
			t.Fatalf("password printed: %s", s)
		}
		if !strings.Contains(s, "alice") {
			t.Fatalf("username missing: %s", s)
		}
	}
}

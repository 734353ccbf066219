package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"mailgate/config"
)

// TestReloadRestartsForOwnAddresses checks which channels a reload
// restarts: a change inside one channel restarts only that one, but a
// changed own address (smtp.from) restarts every channel, since each keeps
// all channels' addresses out of the copies of its replies.
func TestReloadRestartsForOwnAddresses(t *testing.T) {
	second := func(from, poll string) string {
		return fmt.Sprintf(`
[[channel]]
name = "sales"

[channel.userlike]
inbound_url = "http://127.0.0.1:1/inbound"
inbound_token = "sales-inbound-token"
outbound_token = "sales-outbound-token"

[channel.imap]
address = "127.0.0.1:1"
security = "none"
username = "jane@example.test"
password = "jane-pass"
poll_interval = %q

[channel.smtp]
address = "127.0.0.1:1"
security = "none"
from = %q

[channel.verify]
require = "none"
`, poll, from)
	}
	for _, tc := range []struct {
		name             string
		from, poll       string
		supportRestarted bool
	}{
		{"sales poll interval", "Sales <sales@example.test>", "20s", false},
		{"sales from address", "Sales <deals@example.test>", "10s", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, "")
			base, err := os.ReadFile(e.cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			write := func(extra string) *config.Config {
				if err := os.WriteFile(e.cfgPath, append(append([]byte(nil), base...), extra...), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg, err := config.Load(e.cfgPath, config.Options{Getenv: func(string) string { return "" }})
				if err != nil {
					t.Fatal(err)
				}
				return cfg
			}
			cfg := write(second("Sales <sales@example.test>", "10s"))
			ctx, cancel := context.WithCancel(context.Background())
			log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
			d, err := startDaemon(ctx, daemonOptions{Config: cfg, ConfigPath: e.cfgPath, Logger: log, Listen: e.listen})
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			defer func() {
				cancel()
				d.wait()
			}()
			runs := func() (support, sales *channelRun) {
				d.mu.Lock()
				defer d.mu.Unlock()
				return d.channels["support"], d.channels["sales"]
			}
			support0, sales0 := runs()
			if support0 == nil || sales0 == nil {
				t.Fatalf("channels running before the reload: support %v, sales %v", support0 != nil, sales0 != nil)
			}
			if err := d.reload(ctx, write(second(tc.from, tc.poll))); err != nil {
				t.Fatal(err)
			}
			support1, sales1 := runs()
			if sales1 == sales0 {
				t.Errorf("the changed channel sales was not restarted")
			}
			if got := support1 != support0; got != tc.supportRestarted {
				t.Errorf("support restarted = %v, want %v", got, tc.supportRestarted)
			}
			if support1 == nil || sales1 == nil {
				t.Fatalf("channels running after the reload: support %v, sales %v", support1 != nil, sales1 != nil)
			}
		})
	}
}

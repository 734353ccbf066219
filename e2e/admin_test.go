//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The ledger and outbox states that `mailgate status -json` and `mailgate
// dead show` report.
const (
	stateFetched     = "fetched"
	statePosting     = "posting"
	statePosted      = "posted"
	stateSkipped     = "skipped"
	stateQuarantined = "quarantined"
	stateDead        = "dead"

	outboxQueued    = "queued"
	outboxSending   = "sending"
	outboxSent      = "sent"
	outboxFailed    = "failed"
	outboxCancelled = "cancelled"
)

// channelStatus is the part of `mailgate status -json` the scenarios read.
type channelStatus struct {
	Channel   string         `json:"channel"`
	Inbound   map[string]int `json:"inbound"`
	Outbox    map[string]int `json:"outbox"`
	LastError string         `json:"last_error"`
	// ActionsRefused counts the IMAP actions the server refused.
	ActionsRefused    int    `json:"actions_refused"`
	LastActionRefused string `json:"last_action_refused"`
}

// LedgerRows is the number of inbound ledger rows, whatever their state.
func (s channelStatus) LedgerRows() int {
	n := 0
	for _, v := range s.Inbound {
		n += v
	}
	return n
}

// OutboxPending is the number of replies queued or being sent.
func (s channelStatus) OutboxPending() int {
	return s.Outbox[outboxQueued] + s.Outbox[outboxSending]
}

// String is the counts on one line, for logs.
func (s channelStatus) String() string {
	return fmt.Sprintf("inbound %s; outbox %s", counts(s.Inbound), counts(s.Outbox))
}

// counts renders a state->count map in a stable order.
func counts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "(empty)"
	}
	return strings.Join(parts, " ")
}

// cli runs a mailgate admin command against the scenario's configuration.
func (g *mailgate) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.binary, args...)
	cmd.Dir = g.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("mailgate %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Status runs `mailgate status -c FILE -json` and returns the channel's
// counts.
func (g *mailgate) Status(t testing.TB) channelStatus {
	t.Helper()
	out, err := g.cli("status", "-c", g.cfgPath, "-json")
	if err != nil {
		t.Fatal(err)
	}
	var all []channelStatus
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("mailgate status -json: %v:\n%s", err, out)
	}
	if len(all) != 1 || all[0].Channel != "support" {
		t.Fatalf("mailgate status -json: want the one channel \"support\", got:\n%s", out)
	}
	return all[0]
}

// DeadList runs `mailgate dead -c FILE list` and returns its data lines.
func (g *mailgate) DeadList(t testing.TB) []string {
	t.Helper()
	out, err := g.cli("dead", "-c", g.cfgPath, "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("mailgate dead list: no header line:\n%s", out)
	}
	return lines[1:]
}

// waitStatus polls `mailgate status -json` until cond holds or timeout,
// and returns the last status.
func (g *mailgate) waitStatus(t testing.TB, timeout time.Duration, cond func(channelStatus) bool) (channelStatus, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := g.Status(t)
		if cond(st) {
			return st, true
		}
		if time.Now().After(deadline) {
			return st, false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitSettled waits until the channel has at least rows ledger rows, none
// of them still to post, and no reply queued or being sent, and returns
// the last status. From then on mailgate makes no POST and sends no email
// for what it has: every POST was answered before its row counted as
// posted, and every email accepted by the relay before its reply counted
// as sent. So counts taken after it are final, and a duplicate would
// already be among them; no sleep "for late duplicates" is needed.
func (g *mailgate) waitSettled(t testing.TB, timeout time.Duration, rows int) (channelStatus, bool) {
	t.Helper()
	return g.waitStatus(t, timeout, func(s channelStatus) bool {
		return s.LedgerRows() >= rows && s.Inbound[stateFetched]+s.Inbound[statePosting] == 0 && s.OutboxPending() == 0
	})
}

// ledgerRow is one inbound ledger row as `mailgate dead show ID` prints it.
type ledgerRow struct {
	ID         int64  `json:"id"`
	UID        uint32 `json:"uid"`
	State      string `json:"state"`
	Reason     string `json:"reason"`
	Subject    string `json:"subject"`
	PostsDone  int    `json:"posts_done"`
	PostsTotal int    `json:"posts_total"`
}

// Ledger returns every inbound ledger row of the scenario, read with
// `mailgate dead show ID` (which shows a row in any state): the per-email
// detail behind `status`. The suite reads the store only through the
// binary under test, never by opening it itself, so that it cannot
// migrate or lock it.
func (g *mailgate) Ledger(t testing.TB) []*ledgerRow {
	t.Helper()
	want := g.Status(t).LedgerRows()
	var rows []*ledgerRow
	for id := 1; len(rows) < want && id <= want+100; id++ {
		out, err := g.cli("dead", "-c", g.cfgPath, "show", strconv.Itoa(id))
		if err != nil {
			if strings.Contains(err.Error(), "not found") {
				continue
			}
			t.Fatal(err)
		}
		r := &ledgerRow{}
		if err := json.Unmarshal([]byte(out), r); err != nil {
			t.Fatalf("mailgate dead show %d: %v:\n%s", id, err, out)
		}
		rows = append(rows, r)
	}
	if len(rows) != want {
		t.Fatalf("found %d ledger rows with mailgate dead show, status counts %d", len(rows), want)
	}
	return rows
}

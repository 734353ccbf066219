//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// appendAt appends raw to user's INBOX with the given INTERNALDATE, as mail
// that has been in the mailbox since then.
func appendAt(t testing.TB, user string, raw []byte, at time.Time) {
	t.Helper()
	c := imapLogin(t, user)
	cmd := c.Append("INBOX", int64(len(raw)), &imap.AppendOptions{Time: at})
	if _, err := cmd.Write(raw); err != nil {
		t.Fatalf("imap: append: %v", err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("imap: append: %v", err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("imap: append: %v", err)
	}
	_ = c.Logout().Wait()
}

// TestStartPoint connects mailgate, with a new store, to a Dovecot mailbox
// that already holds mail, as a new user would (issue 12). With the
// default start = "now" none of the old mail is posted, only what arrives
// afterwards; with start = "7d" the mail of the last seven days is posted
// too, and an old message moved in among the recent ones is not.
// check-config -connect says beforehand how many messages would be posted.
func TestStartPoint(t *testing.T) {
	old := time.Now().AddDate(0, 0, -30)
	recent := time.Now().AddDate(0, 0, -2)
	mail := func(n int, subject string) []byte {
		return email{From: fmt.Sprintf("history%d@example.test", n), Subject: subject, Body: subject + "."}.raw()
	}
	posted := func(posts []inboundPost) []string {
		var subjects []string
		for _, p := range posts {
			subjects = append(subjects, strings.SplitN(strings.TrimPrefix(p.Text, "Subject: "), "\n", 2)[0])
		}
		return subjects
	}

	tests := []struct {
		name      string
		start     string
		history   []time.Time // INTERNALDATEs of the mail there before
		connect   string      // what check-config -connect says of INBOX
		posted    []string    // subjects posted, in any order
		ledger    map[string]int
		statusOut string
	}{
		{
			name: "now", start: "now",
			history:   []time.Time{old, old, recent},
			connect:   `3 messages; start = "now" posts none of them`,
			posted:    []string{"New 1", "New 2"},
			ledger:    map[string]int{statePosted: 2},
			statusOut: "3 older messages left unposted as history",
		},
		{
			name: "7d", start: "7d",
			history:   []time.Time{old, old, recent, old},
			connect:   `4 messages; start = "7d" posts 1 of them`,
			posted:    []string{"Old 3", "New 1", "New 2"},
			ledger:    map[string]int{statePosted: 3, stateSkipped: 1},
			statusOut: "3 older messages left unposted as history",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resetMailbox(t, supportUser)
			for i, at := range tt.history {
				appendAt(t, supportUser, mail(i+1, fmt.Sprintf("Old %d", i+1)), at)
			}
			ul := newFakeUserlike(t, inboundToken)
			g := newMailgate(t, testDir(t), mailgateOptions{InboundURL: ul.InboundURL(), IMAP: fmt.Sprintf("start = %q", tt.start)})
			out, err := g.cli("check-config", "-connect", "-c", g.cfgPath)
			if err != nil || !strings.Contains(out, tt.connect) {
				t.Errorf("check-config -connect (%v) does not say %q:\n%s", err, tt.connect, out)
			}
			requireDaemon(t, g.Start())
			if !g.WaitLog("imap: reading starts here", 30*time.Second) {
				t.Fatalf("no start point logged; log:\n%s", g.LogTail(40))
			}
			deliver(t, supportUser, email{From: "new1@example.test", Subject: "New 1", Body: "New 1."}.raw())
			deliver(t, supportUser, email{From: "new2@example.test", Subject: "New 2", Body: "New 2."}.raw())

			// The new mail has the highest UIDs and the ledger records in
			// UID order: once both are settled, nothing older can follow.
			st, ok := g.waitStatus(t, time.Minute, func(s channelStatus) bool {
				return s.Inbound[statePosted]+s.Inbound[stateSkipped] == tt.ledger[statePosted]+tt.ledger[stateSkipped]
			})
			if !ok {
				t.Fatalf("ledger never settled: %s; log:\n%s", st, g.LogTail(40))
			}
			if st.LedgerRows() != tt.ledger[statePosted]+tt.ledger[stateSkipped] || st.Inbound[statePosted] != tt.ledger[statePosted] {
				t.Errorf("ledger %s, want %v", st, tt.ledger)
			}
			posts, _ := ul.WaitAccepted(time.Minute, func(p []inboundPost) bool { return len(p) >= len(tt.posted) })
			got := posted(posts)
			if len(got) != len(tt.posted) {
				t.Errorf("posted %q, want %q", got, tt.posted)
			}
			for _, want := range tt.posted {
				if !strings.Contains(strings.Join(got, "\x00"), want) {
					t.Errorf("posted %q, want %q among them", got, want)
				}
			}
			out, err = g.cli("status", "-c", g.cfgPath)
			if err != nil || !strings.Contains(out, tt.statusOut) {
				t.Errorf("status (%v) does not say %q:\n%s", err, tt.statusOut, out)
			}
			if n := countMessages(t, supportUser, "INBOX"); n != len(tt.history)+2 {
				t.Errorf("INBOX holds %d messages, want %d: nothing is lost", n, len(tt.history)+2)
			}
		})
	}
}

// prefixedUser's folders live below "INBOX." with "." as the separator, as
// on Cyrus in Debian's default layout (see start.sh).
const prefixedUser = "prefixed@example.test"

// TestFolderPrefix runs check-config -connect and the daemon against a
// Dovecot mailbox whose folders must be named "INBOX.<name>" (issue 12):
// check-config reports the server's refusal of "Done/2026" and creates and
// names "INBOX.Done.2026" instead; the daemon, still configured with a name
// the server refuses, leaves the mail in INBOX, flagged, and says so in
// status and the metrics.
func TestFolderPrefix(t *testing.T) {
	resetMailbox(t, prefixedUser)
	ul := newFakeUserlike(t, inboundToken)
	g := newMailgate(t, testDir(t), mailgateOptions{
		InboundURL: ul.InboundURL(),
		IMAPUser:   prefixedUser,
		IMAP:       "after = \"move\"\nmove_to = \"Done/2026\"\nquarantine_folder = \"INBOX.Quarantine\"",
	})
	out, err := g.cli("check-config", "-connect", "-c", g.cfgPath)
	if err == nil {
		t.Errorf("check-config -connect passed a move_to the server refuses:\n%s", out)
	}
	for _, want := range []string{
		`imap: personal namespace (prefix "INBOX.", separator ".")`,
		`FAILED  support: imap: imap.move_to "Done/2026": the server refuses to create it`,
		`created "INBOX.Done.2026" instead, which the server accepts: write imap.move_to = "INBOX.Done.2026"`,
		`ok      support: imap: imap.quarantine_folder "INBOX.Quarantine" (created it: it did not exist)`,
		`ok      support: imap: smtp.sent_folder "INBOX.Sent" (exists)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config -connect does not say %q:\n%s", want, out)
		}
	}
	// The same name the server refuses, now in the daemon's hands; the
	// folder check-config created is not the one configured.
	dir := testDir(t) + "-daemon"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	g = newMailgate(t, dir, mailgateOptions{
		InboundURL: ul.InboundURL(),
		IMAPUser:   prefixedUser,
		IMAP:       "after = \"move\"\nmove_to = \"Refused\"",
	})
	requireDaemon(t, g.Start())
	deliver(t, prefixedUser, email{From: "jane@example.test", Subject: "Moved?", Body: "Where does this go?"}.raw())
	if _, ok := ul.WaitAccepted(time.Minute, func(p []inboundPost) bool { return len(p) == 1 }); !ok {
		t.Fatalf("the email was not posted; log:\n%s", g.LogTail(40))
	}
	st, ok := g.waitStatus(t, time.Minute, func(s channelStatus) bool { return s.ActionsRefused > 0 })
	if !ok || st.ActionsRefused != 1 || !strings.Contains(st.LastActionRefused, `move to "Refused"`) {
		t.Fatalf("status does not show the refused move: %d %q\nlog:\n%s", st.ActionsRefused, st.LastActionRefused, g.LogTail(40))
	}
	if out, err := g.cli("status", "-c", g.cfgPath); err != nil || !strings.Contains(out, "imap actions refused by the server: 1") {
		t.Errorf("status (%v) does not say so:\n%s", err, out)
	}
	if n := countMessages(t, prefixedUser, "INBOX", "FLAGGED"); n != 1 {
		t.Errorf("INBOX holds %d flagged messages, want the one whose move was refused", n)
	}
	if !g.WaitLog("imap: action refused by server", 10*time.Second) {
		t.Errorf("no ERROR logged for the refused move")
	}
	resp, err := http.Get("http://" + g.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `mailgate_imap_actions_refused_total{channel="support"} 1`) {
		t.Errorf("metrics lack the refused move:\n%s", body)
	}
}

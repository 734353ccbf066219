//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHostileInput delivers a generated corpus of malformed emails (see
// hostileCorpus: broken MIME, broken encodings, lying charsets, nesting
// bombs, a 40 MiB message over media.max_message_size = 20MiB, 100 KB
// header lines, NUL bytes, missing or duplicated identity headers,
// garbage) with doveadm save, interleaved with 20 good emails. mailgate
// must survive (process alive, /healthz 200, no panic in the log), post
// every good email exactly once, and settle every bad one: posted (once,
// as well as it can be), skipped or dead-lettered, the last two with a
// reason. The ledger must hold exactly one row per delivered email
// (`mailgate status -json`), `mailgate dead list` must list the dead
// ones, and the oversized email must stay in the mailbox.
func TestHostileInput(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 80 emails, one of 40 MiB")
	}
	const goods = 20
	ul, g := startScenario(t, mailgateOptions{RateLimit: 1000, Media: `max_message_size = "20MiB"`})

	bad := hostileCorpus(40 << 20)
	if len(bad) < 50 {
		t.Fatalf("the hostile corpus has %d emails, want at least 50", len(bad))
	}
	type delivered struct {
		name string // "good-NN" or the hostile mail's name
		good bool
		uid  uint32
		size int
		sum  [sha256.Size]byte // of the raw email without CRs
	}
	var all []delivered
	save := func(name string, good bool, raw []byte) {
		uid := uidNext(t, supportUser, "INBOX")
		deliver(t, supportUser, raw)
		all = append(all, delivered{name: name, good: good, uid: uid, size: len(raw), sum: sha256.Sum256(bytes.ReplaceAll(raw, []byte("\r"), nil))})
	}
	start := time.Now()
	every := len(bad) / goods
	gi := 0
	for i, m := range bad {
		save(m.Name, false, m.Raw)
		if (i+1)%every == 0 && gi < goods {
			gi++
			from := senderOf(gi)
			save(fmt.Sprintf("good-%02d", gi), true, email{FromName: fmt.Sprintf("Customer %d", gi), From: from,
				Subject: fmt.Sprintf("A normal question %d", gi),
				Body:    fmt.Sprintf("Hello, this is an ordinary email good-%02d among hostile ones.", gi)}.raw())
		}
	}
	for gi < goods {
		gi++
		save(fmt.Sprintf("good-%02d", gi), true, email{From: senderOf(gi), Subject: "A normal question",
			Body: fmt.Sprintf("Hello, this is an ordinary email good-%02d among hostile ones.", gi)}.raw())
	}
	if next := uidNext(t, supportUser, "INBOX"); next != all[len(all)-1].uid+1 {
		t.Fatalf("UIDNEXT is %d after the deliveries, want %d: UIDs do not map to the deliveries", next, all[len(all)-1].uid+1)
	}
	t.Logf("delivered %d hostile and %d good emails in %v", len(bad), goods, time.Since(start).Round(time.Millisecond))
	// UIDNEXT before each save is the email's UID unless Dovecot numbered
	// a save after a later one (it can, while another session syncs the
	// maildir). Where the mailbox's copy is found by content, its UID
	// counts; Dovecot may rewrite the rest (bare CRs, NULs).
	byContent := map[[sha256.Size]byte][]uint32{} // in UID order, for equal copies
	for _, m := range fetchFolder(t, supportUser, "INBOX") {
		sum := sha256.Sum256(bytes.ReplaceAll(m.Raw, []byte("\r"), nil))
		byContent[sum] = append(byContent[sum], uint32(m.UID))
	}
	moved, uids := 0, map[uint32]string{}
	for i := range all {
		if found := byContent[all[i].sum]; len(found) > 0 {
			byContent[all[i].sum] = found[1:]
			if found[0] != all[i].uid {
				all[i].uid = found[0]
				moved++
			}
		}
		if other, ok := uids[all[i].uid]; ok {
			t.Fatalf("%s and %s both map to UID %d", other, all[i].name, all[i].uid)
		}
		uids[all[i].uid] = all[i].name
	}
	if moved > 0 {
		t.Logf("Dovecot numbered %d emails out of delivery order", moved)
	}

	// Settled: one ledger row per email, none still waiting to post; a
	// duplicate would already be among the posts (see waitSettled).
	st, ok := g.waitSettled(t, 3*time.Minute, len(all))
	settle := time.Since(start)
	if !ok {
		t.Errorf("not settled 3 minutes after the first delivery: %s (want %d ledger rows)\nlog:\n%s", st, len(all), g.LogTail(40))
	}
	t.Logf("settled %v after the first delivery: %s", settle.Round(time.Millisecond), st)

	// Alive and healthy.
	if !g.Running() {
		t.Fatalf("mailgate died; log:\n%s", g.LogTail(60))
	}
	if resp, err := http.Get("http://" + g.listen + "/healthz"); err != nil {
		t.Errorf("/healthz: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/healthz: %s", resp.Status)
		}
	}
	if n := g.CountLog("panic"); n > 0 {
		t.Errorf("the mailgate log mentions \"panic\" %d times", n)
	}
	if g.starts != 1 {
		t.Errorf("mailgate was started %d times", g.starts)
	}

	// Good mail: each posted exactly once, under its sender.
	posts := ul.Accepted()
	for _, d := range all {
		if !d.good {
			continue
		}
		var found []inboundPost
		for _, p := range posts {
			if p.URL == "" && strings.Contains(p.Text, d.name) {
				found = append(found, p)
			}
		}
		var n int
		fmt.Sscanf(d.name, "good-%d", &n)
		if len(found) != 1 {
			t.Errorf("good email %s posted %d times, want 1", d.name, len(found))
		} else if found[0].Email != senderOf(n) {
			t.Errorf("good email %s posted as %q, want %q", d.name, found[0].Email, senderOf(n))
		}
	}

	// Every email has exactly one ledger row; every bad one is settled
	// with a reason.
	rows := map[uint32][]*ledgerRow{}
	for _, r := range g.Ledger(t) {
		rows[r.UID] = append(rows[r.UID], r)
	}
	if st.LedgerRows() != len(all) {
		t.Errorf("the ledger holds %d rows, want %d (one per delivered email): %s", st.LedgerRows(), len(all), st)
	}
	fate := map[string]int{}
	var table strings.Builder
	fmt.Fprintf(&table, "%-28s %9s  %-8s %5s  %s\n", "hostile email", "bytes", "state", "posts", "reason")
	for _, d := range all {
		rs := rows[d.uid]
		if len(rs) != 1 {
			t.Errorf("%s (uid %d): %d ledger rows, want 1", d.name, d.uid, len(rs))
			continue
		}
		r := rs[0]
		if d.good {
			if r.State != statePosted {
				t.Errorf("good email %s: state %s (%s)", d.name, r.State, r.Reason)
			}
			continue
		}
		fate[string(r.State)]++
		marker := "bad-" + d.name
		n := 0
		for _, p := range posts {
			if p.URL == "" && strings.Contains(p.Text, marker) {
				n++
			}
		}
		fmt.Fprintf(&table, "%-28s %9d  %-8s %2d/%-2d  %s\n", d.name, d.size, r.State, n, r.PostsTotal, clipText(r.Reason, 110))
		switch r.State {
		case statePosted:
			if r.PostsDone != r.PostsTotal {
				t.Errorf("%s: posted with %d of %d posts done", d.name, r.PostsDone, r.PostsTotal)
			}
			if n > 1 {
				t.Errorf("%s: its text was posted %d times", d.name, n)
			}
		case stateSkipped, stateDead, stateQuarantined:
			if strings.TrimSpace(r.Reason) == "" {
				t.Errorf("%s: %s without a reason", d.name, r.State)
			}
			if n > 0 {
				t.Errorf("%s: %s, yet its text reached Userlike %d times", d.name, r.State, n)
			}
		default:
			t.Errorf("%s: left in state %s", d.name, r.State)
		}
		if d.name == "over-max-message-size" {
			if r.State != stateDead || !strings.Contains(r.Reason, "max_message_size") {
				t.Errorf("the 40 MiB email: state %s, reason %q; want dead for media.max_message_size", r.State, r.Reason)
			}
			if n := countMessages(t, supportUser, "INBOX", "uid", fmt.Sprint(d.uid)); n != 1 {
				t.Errorf("the 40 MiB email is no longer in the INBOX")
			}
		}
	}
	t.Logf("what became of the %d hostile emails: %s\n%s", len(bad), counts(fate), table.String())

	dead := g.DeadList(t)
	if len(dead) != st.Inbound[stateDead] {
		t.Errorf("mailgate dead list shows %d rows, status -json counts %d dead", len(dead), st.Inbound[stateDead])
	}
	nul := 0
	for _, p := range posts {
		if bytes.Contains(p.Body, []byte(`\u0000`)) {
			nul++
		}
	}
	t.Logf("%d accepted POSTs in all (%d carry a NUL character); %d dead letters listed by `mailgate dead list`", len(posts), nul, len(dead))
}

// clipText shortens s to n runes on one line.
func clipText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

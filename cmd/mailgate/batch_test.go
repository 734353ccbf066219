package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"mailgate/config"
	"mailgate/store"
)

// A backlog is recorded in batches (imapsync.BatchHandler): an email that
// cannot be parsed in the middle of one is dead-lettered with its reason
// while the others are recorded and posted, and a sender's second email
// in the same batch is posted after the first, in one conversation.
func TestBacklogBatchWithMalformedEmail(t *testing.T) {
	e := newTestEnv(t, "")
	e.deliver(customerMail("ann@example.test", "Ann", "b1@example.test", "Printer", "first from ann"))
	e.deliver(customerMail("bob@example.test", "Bob", "b2@example.test", "Router", "from bob"))
	e.deliver("\x00\x01\x02 no header at all")
	e.deliver(customerMail("ann@example.test", "Ann", "b4@example.test", "Re: Printer", "second from ann", "In-Reply-To: <b1@example.test>"))
	e.deliver(customerMail("cid@example.test", "Cid", "b5@example.test", "Cable", "from cid"))
	e.start()

	e.ul.waitPosts(4)
	e.waitLedger(func(s string) bool { return strings.Contains(s, "posted=4") && strings.Contains(s, "dead=1") })
	var ann []string
	var senders []string
	for _, p := range e.ul.received() {
		senders = append(senders, p.Email)
		if p.Email == "ann@example.test" {
			ann = append(ann, p.Text)
		}
	}
	slices.Sort(senders)
	if want := []string{"ann@example.test", "ann@example.test", "bob@example.test", "cid@example.test"}; !slices.Equal(senders, want) {
		t.Fatalf("posted for %v, want %v", senders, want)
	}
	if len(ann) != 2 || !strings.Contains(ann[0], "first from ann") || !strings.Contains(ann[1], "second from ann") {
		t.Errorf("ann's posts %q, want the first email, then the second", ann)
	}
	// The second email was decided after the first was recorded: it
	// continues the conversation instead of starting a new one.
	cfg, err := config.Load(e.cfgPath, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), cfg.Store.Path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	th, ok, err := db.Thread(context.Background(), "support", "ann@example.test")
	db.Close()
	if err != nil || !ok || !slices.Equal(th.MessageIDs, []string{"b1@example.test", "b4@example.test"}) {
		t.Errorf("ann's thread %+v (%v, %v), want both emails in one conversation", th, ok, err)
	}
	code, out, errOut := runCLI(t, "", "dead", "-c", e.cfgPath, "list")
	if code != 0 || !strings.Contains(out, "unparseable") {
		t.Fatalf("dead list: exit %d, want the unparseable email with its reason\n%s%s", code, out, errOut)
	}
}

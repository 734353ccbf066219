package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/mail"
	"path/filepath"
	"strings"
	"testing"
)

// TestDaemonReplyCopiesCustomersCc: a customer writes to support with two
// colleagues in Cc (and, as people do, the support address and an alias of
// it too, and a colleague whose address does not exist). The operator sees
// who was copied; the reply goes to the customer with the colleagues in Cc,
// threaded, and never to mailgate's own addresses; the refused colleague is
// reported to the operator. A later email with one colleague narrows the
// list and says so.
func TestDaemonReplyCopiesCustomersCc(t *testing.T) {
	e := newTestEnv(t, "", "coalesce = \"0s\"", "reply_to = \"Help Desk <help@example.test>\"")
	users := map[string]string{
		"bob@example.org":   "bob-pass",
		"carol@example.net": "carol-pass",
		"help@example.test": "help-pass",
	}
	for u, p := range users {
		if err := e.mail.AddUser(u, p); err != nil {
			t.Fatal(err)
		}
	}
	first := customerMail("jane@example.test", "Jane Doe", "cc1@example.test", "Invoice 77 is wrong", "Please correct it.",
		"Cc: Bob Builder <bob@example.org>, Support <SUPPORT@example.test>,\n Carol <carol@example.net>, help@example.test, dan@example.org")
	// inspect shows the list the daemon keeps.
	path := filepath.Join(t.TempDir(), "first.eml")
	writeFile(t, path, first)
	code, out, errOut := runCLI(t, "", "inspect", "-c", e.cfgPath, path)
	var d struct {
		Cc   []string `json:"cc"`
		Text string   `json:"text"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
		t.Fatalf("inspect: exit %d: %s%s", code, out, errOut)
	}
	if strings.Join(d.Cc, ",") != "bob@example.org,carol@example.net,dan@example.org" || !strings.Contains(d.Text, "\nCC: bob@example.org, carol@example.net, dan@example.org\n") {
		t.Errorf("inspect: cc %q, text %q", d.Cc, d.Text)
	}
	e.deliver(first)
	e.start()

	posts := e.ul.waitPosts(1)
	if want := "Subject: Invoice 77 is wrong\nCC: bob@example.org, carol@example.net, dan@example.org\n\nPlease correct it."; posts[0].Text != want {
		t.Errorf("first post = %q, want %q", posts[0].Text, want)
	}

	reply := func(id, text string) {
		t.Helper()
		body := fmt.Sprintf(`{"message":{"id":%q,"text":%q,"operator":{"name":"Olivia"}},"contact":{"email":"jane@example.test"}}`, id, text)
		if code, resp := e.webhook("outbound-token-xyz", body); code != 200 {
			t.Fatalf("webhook: %d %s", code, resp)
		}
	}
	reply("op-1", "Corrected, see the new invoice.")

	// devmail delivers one copy per accepted RCPT TO and refuses unknown
	// recipients (dan has no mailbox): the mailboxes that got the reply are
	// exactly its accepted envelope recipients. Dan's refusal does not keep
	// the reply from the others; the operator is told.
	janeMsgs := e.waitMailboxMessages("jane@example.test", "jane-pass", "INBOX", 1)
	bobMsgs := e.waitMailboxMessages("bob@example.org", "bob-pass", "INBOX", 1)
	carolMsgs := e.waitMailboxMessages("carol@example.net", "carol-pass", "INBOX", 1)
	if !bytes.Equal(janeMsgs[0], bobMsgs[0]) || !bytes.Equal(janeMsgs[0], carolMsgs[0]) {
		t.Errorf("the copies differ")
	}
	if n := len(e.mailbox("help@example.test", "help-pass", "INBOX")); n != 0 {
		t.Errorf("the reply_to alias got %d copies", n)
	}
	// The support INBOX holds the customer's email only.
	if n := len(e.mailbox(supportUser, supportPass, "INBOX")); n != 1 {
		t.Errorf("the support INBOX has %d messages, want 1: the reply went to support too", n)
	}
	posts = e.ul.waitPosts(2)
	if want := "[mailgate] Your reply could not be delivered to dan@example.org (CC): 550 5.1.1 user unknown"; posts[1].Email != "jane@example.test" || posts[1].Text != want {
		t.Errorf("notice = %+v, want %q", posts[1], want)
	}
	m, err := mail.ReadMessage(bytes.NewReader(janeMsgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	checkAddrs := func(m *mail.Message, field string, want ...string) {
		t.Helper()
		list, err := m.Header.AddressList(field)
		if err != nil && len(want) > 0 {
			t.Fatalf("%s %q: %v", field, m.Header.Get(field), err)
		}
		var got []string
		for _, a := range list {
			got = append(got, a.Address)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}
	checkAddrs(m, "To", "jane@example.test")
	checkAddrs(m, "Cc", "bob@example.org", "carol@example.net", "dan@example.org")
	if got := m.Header.Get("In-Reply-To"); got != "<cc1@example.test>" {
		t.Errorf("In-Reply-To = %q", got)
	}
	if got := m.Header.Get("Subject"); got != "Re: Invoice 77 is wrong" {
		t.Errorf("Subject = %q", got)
	}

	// Jane answers with only Carol in Cc: the operator is told, and the
	// next reply copies Carol only.
	ourID := strings.Trim(m.Header.Get("Message-ID"), "<>")
	e.deliver(customerMail("jane@example.test", "Jane Doe", "cc2@example.test", "Re: Invoice 77 is wrong", "Thanks, Bob is off now.",
		"In-Reply-To: <"+ourID+">", "Cc: carol@example.net"))
	posts = e.ul.waitPosts(3)
	if want := "CC: carol@example.net\n\nThanks, Bob is off now."; posts[2].Text != want {
		t.Errorf("second post = %q, want %q", posts[2].Text, want)
	}
	reply("op-2", "Noted.")
	janeMsgs = e.waitMailboxMessages("jane@example.test", "jane-pass", "INBOX", 2)
	e.waitMailboxMessages("carol@example.net", "carol-pass", "INBOX", 2)
	// Carol's copy arrived in the same SMTP transaction as Bob's would
	// have: Bob's mailbox is final now.
	if n := len(e.mailbox("bob@example.org", "bob-pass", "INBOX")); n != 1 {
		t.Errorf("bob got %d emails, want 1 (he was dropped from Cc)", n)
	}
	m2, err := mail.ReadMessage(bytes.NewReader(janeMsgs[1]))
	if err != nil {
		t.Fatal(err)
	}
	checkAddrs(m2, "Cc", "carol@example.net")
	if got := m2.Header.Get("In-Reply-To"); got != "<cc2@example.test>" {
		t.Errorf("second reply In-Reply-To = %q", got)
	}
}

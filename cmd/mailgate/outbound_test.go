package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// webhook posts a payload to the daemon's webhook for the support channel.
func (e *testEnv) webhook(token, body string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.httpAddr+"/userlike/support", strings.NewReader(body))
	req.Header.Set("API-SECURITY-TOKEN", token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mailbox returns the raw messages of a mailbox of user, in UID order.
func (e *testEnv) mailbox(user, pass, name string) [][]byte {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.mail.IMAPAddr(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		e.t.Fatal(err)
	}
	if _, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		e.t.Fatal(err)
	}
	bufs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		return nil
	}
	var out [][]byte
	for _, b := range bufs {
		for _, body := range b.BodySection {
			out = append(out, body.Bytes)
		}
	}
	return out
}

func (e *testEnv) waitMailboxMessages(user, pass, name string, n int) [][]byte {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		msgs := e.mailbox(user, pass, name)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s of %s has %d messages, want %d", name, user, len(msgs), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDaemonRoundTripReplyIsThreaded(t *testing.T) {
	// Coalescing must span both webhook calls below, each of which waits
	// for an fsync: 4 s leaves room for a slow disk under -race.
	e := newTestEnv(t, "", "coalesce = \"4s\"")
	e.deliver(customerMail("jane@example.test", "Jane Doe", "q1@example.test", "Order 1234 missing", "Where is my order?"))
	e.start()
	e.ul.waitPosts(1)

	// Forged and malformed webhook calls are refused.
	if code, _ := e.webhook("wrong-token", `{"email":"jane@example.test","text":"x"}`); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, body := e.webhook("outbound-token-xyz", `{"email":`); code != 400 || !strings.Contains(body, "error") {
		t.Errorf("malformed JSON: %d %s, want 400 with a JSON error", code, body)
	}

	// Two quick operator lines become one email.
	for i, text := range []string{"Hi Jane, sorry about that.", "It ships today: https://track.example/1234"} {
		body := fmt.Sprintf(`{"message":{"id":"op-%d","text":%q,"operator":{"name":"Olivia"}},"contact":{"email":"jane@example.test"}}`, i, text)
		if code, resp := e.webhook("outbound-token-xyz", body); code != 200 {
			t.Fatalf("webhook: %d %s", code, resp)
		}
	}
	// A duplicate delivery is answered 200 and queued once.
	if code, resp := e.webhook("outbound-token-xyz", `{"message":{"id":"op-0","text":"Hi Jane, sorry about that.","operator":{"name":"Olivia"}},"contact":{"email":"jane@example.test"}}`); code != 200 || !strings.Contains(resp, "duplicate") {
		t.Errorf("duplicate: %d %s", code, resp)
	}

	msgs := e.waitMailboxMessages("jane@example.test", "jane-pass", "INBOX", 1)
	time.Sleep(1500 * time.Millisecond)
	if msgs = e.mailbox("jane@example.test", "jane-pass", "INBOX"); len(msgs) != 1 {
		t.Fatalf("customer got %d emails, want 1", len(msgs))
	}
	m, err := mail.ReadMessage(bytes.NewReader(msgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		"In-Reply-To": "<q1@example.test>",
		"Subject":     "Re: Order 1234 missing",
		"Reply-To":    "<support@example.test>",
	}
	for h, want := range checks {
		if got := m.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if refs := m.Header.Get("References"); !strings.Contains(refs, "<q1@example.test>") {
		t.Errorf("References = %q", refs)
	}
	if from := m.Header.Get("From"); !strings.Contains(from, "Olivia") || !strings.Contains(from, "support@example.test") {
		t.Errorf("From = %q", from)
	}
	if m.Header.Get("Auto-Submitted") != "" {
		t.Error("a human reply carries Auto-Submitted")
	}
	body, _ := io.ReadAll(m.Body)
	for _, want := range []string{"sorry about that", "ships today"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	// The reply is in the support mailbox's Sent folder too.
	sent := e.waitMailboxMessages(supportUser, supportPass, "Sent", 1)
	if !bytes.Contains(sent[0], []byte("Re: Order 1234 missing")) {
		t.Errorf("Sent folder holds %q", sent[0][:min(200, len(sent[0]))])
	}

	// The customer answers the reply; mailgate recognises the thread (no
	// subject line) and does not post its own reply coming back.
	ourID := strings.Trim(m.Header.Get("Message-ID"), "<>")
	e.deliver(customerMail("jane@example.test", "Jane Doe", "q2@example.test", "Re: Order 1234 missing", "Great, thanks!", "In-Reply-To: <"+ourID+">"))
	own := strings.ReplaceAll(string(msgs[0]), "\r\n", "\n")
	e.deliver(own)
	posts := e.ul.waitPosts(2)
	if posts[1].Text != "Great, thanks!" {
		t.Errorf("follow-up text = %q", posts[1].Text)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(e.ul.received()); n != 2 {
		t.Errorf("%d posts; our own reply coming back must not be posted", n)
	}
}

func TestDaemonReplyFailureIsNotified(t *testing.T) {
	e := newTestEnv(t, "", "coalesce = \"0s\"")
	e.start()
	// nobody@example.test has no mailbox: the relay answers 550.
	if code, resp := e.webhook("outbound-token-xyz", `{"id":"f1","email":"nobody@example.test","text":"Hello?","operator_name":"Olivia"}`); code != 200 {
		t.Fatalf("webhook: %d %s", code, resp)
	}
	posts := e.ul.waitPosts(1)
	if posts[0].Email != "nobody@example.test" || !strings.HasPrefix(posts[0].Text, "[mailgate]") || !strings.Contains(posts[0].Text, "550") {
		t.Errorf("notice = %+v", posts[0])
	}
	code, out, _ := runCLI(t, "", "status", "-c", e.cfgPath)
	if code != 0 || !strings.Contains(out, "1 failed") {
		t.Errorf("status: %d\n%s", code, out)
	}
}

// TestDaemonForgedBounceChangesNothing: a delivery report quoting a sent
// reply's Message-ID, from a sender that is neither the null sender as
// delivered nor verified in the relay's domain, fails nothing and posts
// nothing. A genuine one fails the reply, and its notice carries a fixed
// sentence and the status code, never the report's own text.
func TestDaemonForgedBounceChangesNothing(t *testing.T) {
	e := newTestEnv(t, "", "coalesce = \"0s\"")
	e.start()
	if code, resp := e.webhook("outbound-token-xyz", `{"id":"r1","email":"jane@example.test","text":"Your refund is on its way.","operator_name":"Olivia"}`); code != 200 {
		t.Fatalf("webhook: %d %s", code, resp)
	}
	sent := e.waitMailboxMessages("jane@example.test", "jane-pass", "INBOX", 1)
	m, err := mail.ReadMessage(bytes.NewReader(sent[0]))
	if err != nil {
		t.Fatal(err)
	}
	msgID := strings.Trim(m.Header.Get("Message-ID"), "<>")
	dsn := func(headers string) string {
		return headers + "To: support@example.test\nSubject: Undelivered Mail Returned to Sender\n" +
			"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n" +
			"--B\nContent-Type: text/plain\n\nYour refund failed. Call +1 555 0100 now.\n" +
			"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.evil.test\n\n" +
			"Final-Recipient: rfc822; jane@example.test\nAction: failed\nStatus: 5.1.1\n" +
			"Diagnostic-Code: smtp; 550 refund failed, call +1 555 0100 now\n\n" +
			"--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: <" + msgID + ">\n\n--B--\n"
	}
	e.deliver(dsn("From: MAILER-DAEMON@evil.test\nMessage-ID: <forged-dsn@evil.test>\n"))
	// Handled in UID order: once this is posted, the forged report was seen.
	e.deliver(customerMail("real@example.test", "Real", "after-forged@example.test", "Hi", "genuine"))
	posts := e.ul.waitPosts(1)
	if len(posts) != 1 || posts[0].Email != "real@example.test" {
		t.Fatalf("posts after the forged report = %+v, want only the customer's", posts)
	}
	if code, out, _ := runCLI(t, "", "status", "-c", e.cfgPath); code != 0 || !strings.Contains(out, "1 sent, 0 failed") {
		t.Fatalf("a forged report failed a reply: exit %d\n%s", code, out)
	}

	e.deliver(dsn("Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.test\nMessage-ID: <real-dsn@mx.example.test>\n"))
	posts = e.ul.waitPosts(2)
	notice := posts[1]
	want := "[mailgate] Your reply could not be delivered to jane@example.test: the recipient's mail server returned it (status 5.1.1)"
	if notice.Email != "jane@example.test" || notice.Text != want {
		t.Errorf("notice = %+v, want %q", notice, want)
	}
	if code, out, _ := runCLI(t, "", "status", "-c", e.cfgPath); code != 0 || !strings.Contains(out, "1 failed") {
		t.Errorf("status after the genuine report: exit %d\n%s", code, out)
	}
}

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailgate/internal/syncbuf"
	"mailgate/userlike"
)

func TestDaemonPostsNewMailOnce(t *testing.T) {
	e := newTestEnv(t, "")
	// Mail that is already there, and already read by a human, is posted.
	uid := e.deliver(customerMail("jane@example.test", "Jane Doe", "m1@example.test", "Order 1234", "Hello, my order 1234 has not arrived."))
	e.setSeen(uid)
	e.start()
	posts := e.ul.waitPosts(1)
	want := userlike.InboundMessage{Email: "jane@example.test", Name: "Jane Doe", Text: "Subject: Order 1234\n\nHello, my order 1234 has not arrived."}
	if posts[0] != want {
		t.Errorf("post = %+v\nwant %+v", posts[0], want)
	}

	// New mail while idling: a reply with quoted history is trimmed and
	// carries no subject line.
	e.deliver(customerMail("jane@example.test", "Jane Doe", "m2@example.test", "Re: Order 1234", "It arrived now, thanks!\n\nOn Tue, 24 Nov 2026 at 09:00, Support <support@example.test> wrote:\n> Where is it?\n> Regards",
		"In-Reply-To: <m1@example.test>"))
	posts = e.ul.waitPosts(2)
	if got := posts[1].Text; got != "It arrived now, thanks!" {
		t.Errorf("reply text = %q", got)
	}
	// After posting, the mail is flagged \Seen (after = "seen").
	e.waitFlag("INBOX", 2, imap.FlagSeen)
	// The fake records a POST before mailgate commits it: once both rows
	// are posted, no POST of theirs is left to come.
	e.waitLedger(func(s string) bool { return strings.Contains(s, "posted=2") })
	if n := len(e.ul.received()); n != 2 {
		t.Errorf("%d posts, want exactly 2", n)
	}
}

func TestDaemonAttachmentsBecomeMediaURLs(t *testing.T) {
	e := newTestEnv(t, "")
	pdf := bytes.Repeat([]byte("%PDF-1.4 fake pdf body\n"), 2000)
	raw := "Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\n" +
		"From: Jane Doe <jane@example.test>\nTo: support@example.test\nSubject: Invoice\nMessage-ID: <att@example.test>\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n" +
		"--b1\nContent-Type: text/plain; charset=utf-8\n\nSee the attached invoice.\n" +
		"--b1\nContent-Type: application/pdf\nContent-Disposition: attachment; filename*=utf-8''Rechnung%20M%C3%A4rz.pdf\nContent-Transfer-Encoding: base64\n\n" +
		wrap(base64.StdEncoding.EncodeToString(pdf)) + "\n--b1--\n"
	e.deliver(raw)
	e.start()
	posts := e.ul.waitPosts(2)
	if posts[0].Text != "Subject: Invoice\n\nSee the attached invoice." || posts[0].URL != "" {
		t.Errorf("first post = %+v, want the text", posts[0])
	}
	url := posts[1].URL
	if !strings.Contains(url, "/media/") || !strings.Contains(url, "sig=") || posts[1].Text != "" {
		t.Fatalf("second post = %+v, want a signed media URL", posts[1])
	}
	sum, resp := download(t, url)
	want := sha256.Sum256(pdf)
	if resp.StatusCode != 200 || sum != hex.EncodeToString(want[:]) {
		t.Errorf("download: status %d, sha256 %s, want 200 and %x", resp.StatusCode, sum, want)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "Rechnung%20M%C3%A4rz.pdf") {
		t.Errorf("Content-Disposition = %q", cd)
	}
	// A tampered signature is refused.
	bad := strings.Replace(url, "sig=", "sig=A", 1)
	if _, resp := download(t, bad); resp.StatusCode != http.StatusForbidden {
		t.Errorf("tampered URL: status %d, want 403", resp.StatusCode)
	}
}

func TestDaemonBurstOncePerMessageInOrder(t *testing.T) {
	e := newTestEnv(t, "\n[channel.inbound]\nrate_limit = 1000\n")
	const senders, perSender = 10, 50
	e.start()
	for i := range perSender {
		for s := range senders {
			from := fmt.Sprintf("cust%d@example.test", s)
			e.deliver(customerMail(from, fmt.Sprintf("Customer %d", s), fmt.Sprintf("b%d-%d@example.test", s, i), fmt.Sprintf("Burst %d", s), fmt.Sprintf("message %d", i), fmt.Sprintf("In-Reply-To: <b%d-0@example.test>", s)))
		}
	}
	e.ul.waitPosts(senders * perSender)
	e.waitLedger(func(s string) bool { return strings.Contains(s, fmt.Sprintf("posted=%d", senders*perSender)) })
	posts := e.ul.received()
	if len(posts) != senders*perSender {
		t.Fatalf("%d posts, want %d", len(posts), senders*perSender)
	}
	next := map[string]int{}
	for _, p := range posts {
		text := p.Text
		if i := strings.LastIndex(text, "message "); i >= 0 {
			text = text[i:]
		}
		var n int
		fmt.Sscanf(text, "message %d", &n)
		if n != next[p.Email] {
			t.Fatalf("%s: got message %d, want %d (order per sender broken)", p.Email, n, next[p.Email])
		}
		next[p.Email]++
	}
}

func TestDaemonUserlikeErrors(t *testing.T) {
	e := newTestEnv(t, "")
	e.ul.SetRespond(func(m userlike.InboundMessage, attempt int) int {
		switch {
		case strings.Contains(m.Text, "flaky") && attempt == 1:
			return http.StatusServiceUnavailable
		case strings.Contains(m.Text, "refused"):
			return http.StatusBadRequest
		}
		return 0
	})
	e.deliver(customerMail("ann@example.test", "Ann", "u1@example.test", "A", "refused by Userlike"))
	e.deliver(customerMail("bob@example.test", "Bob", "u2@example.test", "B", "flaky first time"))
	e.deliver(customerMail("cid@example.test", "Cid", "u3@example.test", "C", "goes through"))
	e.start()
	posts := e.ul.waitPosts(2)
	// Once the ledger holds every email as settled, no POST is left to
	// come: the flaky one was retried, the refused one died.
	e.waitLedger(func(s string) bool { return strings.Contains(s, "posted=2") && strings.Contains(s, "dead=1") })
	var emails []string
	for _, p := range e.ul.received() {
		emails = append(emails, p.Email)
	}
	slices.Sort(emails)
	if !slices.Equal(emails, []string{"bob@example.test", "cid@example.test"}) {
		t.Errorf("posted for %v, want bob and cid once each (posts %+v)", emails, posts)
	}

	// The admin commands work against the live daemon: the dead letter is
	// listed with its reason, and a retry posts it once Userlike accepts.
	code, out, errOut := runCLI(t, "", "dead", "-c", e.cfgPath, "list")
	if code != 0 || !strings.Contains(out, "ann@example.test") || !strings.Contains(out, "400") {
		t.Fatalf("dead list: exit %d\n%s%s", code, out, errOut)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	code, out, _ = runCLI(t, "", "status", "-c", e.cfgPath, "-json")
	if code != 0 || !strings.Contains(out, `"dead": 1`) {
		t.Errorf("status -json: exit %d\n%s", code, out)
	}
	e.ul.SetRespond(nil)
	if code, out, errOut := runCLI(t, "", "dead", "-c", e.cfgPath, "retry", id); code != 0 {
		t.Fatalf("dead retry: exit %d\n%s%s", code, out, errOut)
	}
	e.ul.waitPosts(3)
	// The fake records a POST before mailgate reads its 200 and commits.
	e.waitLedger(func(s string) bool { return strings.Contains(s, "posted=3") })
	code, out, _ = runCLI(t, "", "status", "-c", e.cfgPath)
	if code != 0 || !strings.Contains(out, "3 posted") {
		t.Errorf("status after retry: exit %d\n%s", code, out)
	}
}

func TestDaemonQuarantinesUnverifiedSender(t *testing.T) {
	e := newTestEnv(t, "")
	forged := "Authentication-Results: evil.example; dmarc=pass header.from=example.test\n" +
		"From: Jane Doe <jane@example.test>\nTo: support@example.test\nSubject: Please reset\nMessage-ID: <forged@evil.example>\n\nGive me the history.\n"
	e.deliver(forged)
	e.deliver(customerMail("real@example.test", "Real", "r1@example.test", "Hi", "genuine"))
	e.start()
	posts := e.ul.waitPosts(1)
	e.waitMailbox("Quarantine", 1)
	e.waitLedger(func(s string) bool { return strings.Contains(s, "posted=1") && strings.Contains(s, "quarantined=1") })
	if got := e.ul.received(); len(got) != 1 || got[0].Email != "real@example.test" {
		t.Errorf("posts = %+v, want only the genuine one", posts)
	}
}

// setSeen flags a message \Seen, as a human reading the mailbox would.
func (e *testEnv) setSeen(uid uint32) {
	c := e.imap()
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		e.t.Fatal(err)
	}
	set := imap.UIDSetNum(imap.UID(uid))
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) imap() *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.mail.IMAPAddr(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := c.Login(supportUser, supportPass).Wait(); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// waitFlag waits until the message uid of mailbox has flag.
func (e *testEnv) waitFlag(mailbox string, uid uint32, flag imap.Flag) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c := e.imap()
		_, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		var flags []imap.Flag
		if err == nil {
			bufs, _ := c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{Flags: true}).Collect()
			if len(bufs) == 1 {
				flags = bufs[0].Flags
			}
		}
		c.Close()
		if slices.Contains(flags, flag) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s uid %d: flags %v, want %s", mailbox, uid, flags, flag)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitMailbox waits until mailbox holds n messages.
func (e *testEnv) waitMailbox(mailbox string, n uint32) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c := e.imap()
		st, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
		c.Close()
		if err == nil && st.NumMessages != nil && *st.NumMessages == n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("mailbox %s: status %+v, err %v; want %d messages", mailbox, st, err, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLedger waits until `mailgate status`-like output of the ledger
// satisfies ok. It reads the store directly.
func (e *testEnv) waitLedger(ok func(string) bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		s := ledgerSummary(e.t, e.cfgPath)
		if ok(s) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("ledger: %s", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wrap(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

func TestDaemonAttachesOriginalWhenTrimmed(t *testing.T) {
	e := newTestEnv(t, "\n[channel.inbound]\nattach_original = \"when-trimmed\"\n")
	raw := customerMail("jane@example.test", "Jane", "o1@example.test", "Re: Order", "New words.\n\n> old quoted words\n> more", "In-Reply-To: <x@example.test>")
	e.deliver(customerMail("bob@example.test", "Bob", "o2@example.test", "Hi", "Nothing to trim here.", "In-Reply-To: <y@example.test>"))
	e.deliver(raw)
	e.start()
	e.ul.waitPosts(3)
	e.waitLedger(func(s string) bool { return strings.Contains(s, "posted=2") })
	var urls []string
	for _, p := range e.ul.received() {
		if p.URL != "" {
			urls = append(urls, p.URL)
			if p.Email != "jane@example.test" {
				t.Errorf("original attached for %s, whose mail was not trimmed", p.Email)
			}
		}
	}
	if len(urls) != 1 || !strings.Contains(urls[0], "original-message.eml") {
		t.Fatalf("media posts %v, want one original-message.eml", urls)
	}
	sum, resp := download(t, urls[0])
	want := sha256.Sum256([]byte(strings.ReplaceAll(raw, "\n", "\r\n")))
	if resp.StatusCode != 200 || sum != hex.EncodeToString(want[:]) {
		t.Errorf("original: status %d sha %s, want the raw email", resp.StatusCode, sum)
	}
}

// TestDaemonDeadRetryRefetches retries, against a live daemon, a dead
// letter that had nothing to post (an email over media.max_message_size):
// the daemon fetches it from the mailbox again and decides anew, so with
// the limit raised it is posted, and the dead letter is gone.
func TestDaemonDeadRetryRefetches(t *testing.T) {
	e := newTestEnv(t, "\n[media]\nmax_message_size = \"2KiB\"\n")
	e.deliver(customerMail("big@example.test", "Big", "big1@example.test", "Log file", strings.Repeat("a long line of log output\n", 200)))
	e.deliver(customerMail("small@example.test", "Small", "s1@example.test", "Hi", "short question"))
	stop := e.start()
	e.ul.waitPosts(1)
	e.waitLedger(func(s string) bool { return strings.Contains(s, "dead=1") })
	_, out, _ := runCLI(t, "", "dead", "-c", e.cfgPath, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "max_message_size") {
		t.Fatalf("dead list:\n%s", out)
	}
	id := strings.Fields(lines[1])[0]

	stop()
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// A folder that is no longer watched cannot be fetched from: refused.
	unwatched := bytes.Replace(cfg, []byte(`poll_interval = "10s"`), []byte(`poll_interval = "10s"`+"\nfolders = [\"Archive\"]"), 1)
	if err := os.WriteFile(e.cfgPath, unwatched, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, "", "dead", "-c", e.cfgPath, "retry", id); code == 0 || !strings.Contains(errOut, "not watched") {
		t.Errorf("dead retry with INBOX unwatched: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.WriteFile(e.cfgPath, bytes.Replace(cfg, []byte(`"2KiB"`), []byte(`"1MiB"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	e.start()
	code, out, errOut := runCLI(t, "", "dead", "-c", e.cfgPath, "retry", id)
	if code != 0 || !strings.Contains(out, "fetched from the mailbox again") {
		t.Fatalf("dead retry: exit %d\n%s%s", code, out, errOut)
	}
	posts := e.ul.waitPosts(2)
	if posts[1].Email != "big@example.test" || !strings.Contains(posts[1].Text, "a long line of log output") {
		t.Errorf("second post = %+v, want the big email", posts[1])
	}
	e.waitLedger(func(s string) bool { return strings.Contains(s, "posted=2") && !strings.Contains(s, "dead") })
	if _, out, _ := runCLI(t, "", "dead", "-c", e.cfgPath, "list"); strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("dead list after the retry:\n%s", out)
	}
	// A second retry of the replaced dead letter finds nothing.
	if code, _, _ := runCLI(t, "", "dead", "-c", e.cfgPath, "retry", id); code == 0 {
		t.Errorf("retrying the replaced dead letter %s again succeeded", id)
	}
	// The refused retry queued nothing: both rows are settled, so no POST
	// can follow.
	if s := ledgerSummary(t, e.cfgPath); !strings.Contains(s, "posted=2") || strings.Contains(s, "fetched") || strings.Contains(s, "posting") {
		t.Errorf("ledger after the refused retry: %s", s)
	}
	if n := len(e.ul.received()); n != 2 {
		t.Errorf("%d posts, want 2", n)
	}
}

// TestDaemonQuarantinedMediaIsRemoved: the attachments of an unverified
// sender are stored while the email is parsed, before the verdict, and
// removed as soon as the quarantine is recorded; content that a posted
// email shares stays.
func TestDaemonQuarantinedMediaIsRemoved(t *testing.T) {
	e := newTestEnv(t, "")
	own := bytes.Repeat([]byte("%PDF-1.4 only in the forged email\n"), 3000)
	shared := bytes.Repeat([]byte("%PDF-1.4 in both emails\n"), 3000)
	withAttachments := func(headers string, atts ...[]byte) string {
		s := headers + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain\n\nSee attached.\n"
		for i, a := range atts {
			s += fmt.Sprintf("--b1\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a%d.pdf\nContent-Transfer-Encoding: base64\n\n%s\n", i, wrap(base64.StdEncoding.EncodeToString(a)))
		}
		return s + "--b1--\n"
	}
	e.deliver(withAttachments("Authentication-Results: evil.example; dmarc=pass header.from=example.test\n"+
		"From: Jane <jane@example.test>\nTo: support@example.test\nSubject: Invoice\nMessage-ID: <forged-media@evil.example>\n", own, shared))
	e.deliver(withAttachments("Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\n"+
		"From: Real <real@example.test>\nTo: support@example.test\nSubject: Invoice\nMessage-ID: <real-media@example.test>\n", shared))
	e.start()
	// Handled in UID order: once the second email is posted, the first
	// is quarantined.
	posts := e.ul.waitPosts(2)
	e.waitLedger(func(s string) bool { return strings.Contains(s, "quarantined=1") })
	file := func(b []byte) string {
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		return filepath.Join(e.dir, "state", "media", h[:2], h)
	}
	if _, err := os.Stat(file(own)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the quarantined email's attachment is still stored: %v", err)
	}
	if _, err := os.Stat(file(shared)); err != nil {
		t.Errorf("the posted email's attachment is gone: %v", err)
	}
	sum, resp := download(t, posts[1].URL)
	if want := sha256.Sum256(shared); resp.StatusCode != 200 || sum != hex.EncodeToString(want[:]) {
		t.Errorf("posted media: status %d", resp.StatusCode)
	}
}

// TestDaemonRateLimitWarnsOnce sends five emails from one sender to a
// channel that posts two per sender and window: two are posted, three
// skipped, and the log warns once (at the first skipped one), not per
// email.
func TestDaemonRateLimitWarnsOnce(t *testing.T) {
	e := newTestEnv(t, "\n[channel.inbound]\nrate_limit = 2\n")
	logs := &syncbuf.Buffer{}
	e.startLogging(logs)
	for i := range 5 {
		e.deliver(customerMail("jane@example.test", "Jane", fmt.Sprintf("rl%d@example.test", i), fmt.Sprintf("Question %d", i), "Hello."))
	}
	e.waitLedger(func(s string) bool { return strings.Contains(s, "posted=2") && strings.Contains(s, "skipped=3") })
	if got := len(e.ul.received()); got != 2 {
		t.Errorf("%d posts, want 2", got)
	}
	if n := strings.Count(logs.String(), "rate limit reached"); n != 1 {
		t.Errorf("%d rate limit warnings, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "contact=jane@example.test") {
		t.Errorf("the warning does not name the sender:\n%s", logs.String())
	}
}

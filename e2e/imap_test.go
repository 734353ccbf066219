//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	_ "github.com/emersion/go-message/charset" // non-UTF-8 parts of fetched mail
	gomail "github.com/emersion/go-message/mail"
)

// imapLogin opens an IMAP session as user on the suite's Dovecot; the
// session is closed when the test ends.
func imapLogin(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(suite.vars["IMAP_ADDR"], nil)
	if err != nil {
		t.Fatalf("imap: dial %s: %v", suite.vars["IMAP_ADDR"], err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, suite.vars["MAIL_PASSWORD"]).Wait(); err != nil {
		t.Fatalf("imap: login %s: %v", user, err)
	}
	return c
}

// storedMail is one message of a mailbox, as fetched over IMAP.
type storedMail struct {
	UID imap.UID
	Raw []byte
}

// Header parses the message's header.
func (m storedMail) Header() mail.Header {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		return mail.Header{}
	}
	return msg.Header
}

// fetchFolder returns every message of user's folder, in UID order, over
// IMAP (BODY.PEEK[], so nothing is flagged \Seen).
func fetchFolder(t testing.TB, user, folder string) []storedMail {
	t.Helper()
	c, err := imapclient.DialInsecure(suite.vars["IMAP_ADDR"], nil)
	if err != nil {
		t.Fatalf("imap: dial: %v", err)
	}
	defer c.Close()
	if err := c.Login(user, suite.vars["MAIL_PASSWORD"]).Wait(); err != nil {
		t.Fatalf("imap: login %s: %v", user, err)
	}
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("imap: select %s/%s: %v", user, folder, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	section := &imap.FetchItemBodySection{Peek: true}
	var all imap.SeqSet
	all.AddRange(1, 0)
	bufs, err := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatalf("imap: fetch %s/%s: %v", user, folder, err)
	}
	out := make([]storedMail, 0, len(bufs))
	for _, b := range bufs {
		out = append(out, storedMail{UID: b.UID, Raw: b.FindBodySection(section)})
	}
	c.Logout().Wait()
	return out
}

// threads runs UID THREAD algorithm UTF-8 ALL in user's folder and returns
// each thread as the flat list of its UIDs. It skips the check when the
// server does not offer the algorithm.
func threads(t testing.TB, user, folder string, algorithm imap.ThreadAlgorithm) ([][]uint32, bool) {
	t.Helper()
	c := imapLogin(t, user)
	if !c.Caps().Has(imap.Cap("THREAD=" + string(algorithm))) {
		return nil, false
	}
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatalf("imap: select %s/%s: %v", user, folder, err)
	}
	data, err := c.UIDThread(&imapclient.ThreadOptions{Algorithm: algorithm, SearchCriteria: &imap.SearchCriteria{}}).Wait()
	if err != nil {
		t.Fatalf("imap: UID THREAD %s UTF-8 ALL in %s/%s: %v", algorithm, user, folder, err)
	}
	var out [][]uint32
	for _, d := range data {
		out = append(out, flattenThread(d))
	}
	return out, true
}

// flattenThread lists every UID of a thread tree.
func flattenThread(d imapclient.ThreadData) []uint32 {
	uids := append([]uint32(nil), d.Chain...)
	for _, s := range d.SubThreads {
		uids = append(uids, flattenThread(s)...)
	}
	return uids
}

// uidsByMarker fetches user's folder and maps the first match of re in
// each message's text to the message's UID. The UIDs are the mailbox's
// own arrival order, which is the order mailgate promises to post a
// sender's emails in. It is not always the order of delivery: Dovecot's
// maildir can number a message delivered a moment earlier after later
// ones, when the IMAP session and the delivery sync the folder at once.
func uidsByMarker(t testing.TB, user, folder string, re *regexp.Regexp) map[string]imap.UID {
	t.Helper()
	uids := map[string]imap.UID{}
	for _, m := range fetchFolder(t, user, folder) {
		text, err := plainText(m.Raw)
		if err != nil {
			t.Fatalf("%s/%s UID %d: %v", user, folder, m.UID, err)
		}
		if k := re.FindString(text); k != "" {
			uids[k] = m.UID
		}
	}
	return uids
}

// reordered counts the pairs of markers that the mailbox numbered in the
// opposite order of their delivery (delivered lists the markers in
// delivery order; only pairs with the same key, such as the same sender,
// are compared).
func reordered(delivered []string, uids map[string]imap.UID, key func(marker string) string) int {
	n := 0
	for i, a := range delivered {
		for _, b := range delivered[i+1:] {
			if key(a) == key(b) && uids[a] > uids[b] {
				n++
			}
		}
	}
	return n
}

// plainText returns the decoded text/plain parts of a message, joined; for
// a message without one, the decoded body of every inline part.
func plainText(raw []byte) (string, error) {
	r, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil && r == nil {
		return "", err
	}
	var plain, other []string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return strings.Join(append(plain, other...), "\n"), err
		}
		h, ok := p.Header.(*gomail.InlineHeader)
		if !ok {
			continue
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			return "", err
		}
		if ct, _, _ := h.ContentType(); ct == "text/plain" {
			plain = append(plain, string(b))
		} else {
			other = append(other, string(b))
		}
	}
	if len(plain) > 0 {
		return strings.Join(plain, "\n"), nil
	}
	return strings.Join(other, "\n"), nil
}

// decodedHeader decodes RFC 2047 encoded words.
func decodedHeader(v string) string {
	d, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// tryCount is countMessages that returns an error instead of failing the
// test, for folders that may not exist yet.
func tryCount(user, folder string, query ...string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"search", "-u", user, "mailbox", folder}, query...)
	out, err := doveadm(ctx, nil, args...)
	if err != nil {
		return 0, err
	}
	return len(strings.Fields(out)) / 2, nil
}

// waitCount waits until user's folder holds want messages matching query
// and returns the last count.
func waitCount(t testing.TB, user, folder string, want int, timeout time.Duration, query ...string) (int, bool) {
	t.Helper()
	if len(query) == 0 {
		query = []string{"all"}
	}
	deadline := time.Now().Add(timeout)
	for {
		n, err := tryCount(user, folder, query...)
		if err == nil && n == want {
			return n, true
		}
		if time.Now().After(deadline) {
			return n, false
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// uidNext is the UID the next message delivered to user's folder gets.
func uidNext(t testing.TB, user, folder string) uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := doveadm(ctx, nil, "-f", "flow", "mailbox", "status", "-u", user, "uidnext", folder)
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	_, v, _ := strings.Cut(out, "uidnext=")
	if _, err := fmt.Sscanf(v, "%d", &n); err != nil {
		t.Fatalf("doveadm mailbox status: %q: %v", out, err)
	}
	return n
}

// resetMailboxes empties the mailboxes of users.
func resetMailboxes(t testing.TB, users ...string) {
	t.Helper()
	for _, u := range users {
		resetMailbox(t, u)
	}
}

// postfixQueue lists Postfix's queue (postqueue -j), for failure messages.
func postfixQueue() string {
	out, _ := exec.Command("postqueue", "-c", suite.vars["POSTFIX_CONFIG_DIR"], "-p").CombinedOutput()
	return string(out)
}

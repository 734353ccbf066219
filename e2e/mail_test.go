//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"mailgate/e2e/mailsys"
	"mime"
	"net"
	"net/smtp"
	"net/textproto"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// supportUser is the mailbox mailgate watches.
const supportUser = "support@example.test"

// email is a test email, rendered by raw.
type email struct {
	FromName string // display name, may be non-ASCII
	From     string
	To       string // default supportUser
	Subject  string
	Body     string // plain text, "\n" line ends
	// MessageID without angle brackets; default a random one.
	MessageID string
	Date      time.Time // default now
	// Attachment, when set, makes the email multipart/mixed.
	Attachment *attachment
}

// attachment is one file attached to an email.
type attachment struct {
	Filename    string
	ContentType string
	Data        []byte
}

// raw renders e as an RFC 5322 message with CRLF line ends.
func (e email) raw() []byte {
	to := e.To
	if to == "" {
		to = supportUser
	}
	id := e.MessageID
	if id == "" {
		id = randomToken() + "@client.example.test"
	}
	date := e.Date
	if date.IsZero() {
		date = time.Now()
	}
	from := "<" + e.From + ">"
	if e.FromName != "" {
		from = mime.QEncoding.Encode("utf-8", e.FromName) + " " + from
	}
	var b strings.Builder
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", from)
	h("To", "<"+to+">")
	h("Subject", mime.QEncoding.Encode("utf-8", e.Subject))
	h("Date", date.Format(time.RFC1123Z))
	h("Message-ID", "<"+id+">")
	h("MIME-Version", "1.0")
	body := strings.ReplaceAll(e.Body, "\n", "\r\n")
	if e.Attachment == nil {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n" + body + "\r\n")
		return []byte(b.String())
	}
	boundary := "e2e-" + randomToken()
	h("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a multi-part message in MIME format.\r\n")
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(body + "\r\n")
	a := e.Attachment
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: " + a.ContentType + `; name="` + a.Filename + "\"\r\n")
	b.WriteString(`Content-Disposition: attachment; filename="` + a.Filename + "\"\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(a.Data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	b.WriteString("--" + boundary + "--\r\n")
	return []byte(b.String())
}

// randomToken returns 16 random hex digits.
func randomToken() string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// testPDF returns a small PDF document whose content stream carries n
// random bytes, so that every call gives a different file.
func testPDF(n int) []byte {
	noise := make([]byte, n)
	rand.Read(noise)
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	b.WriteString("1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n")
	b.WriteString("2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n")
	b.WriteString("3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >> endobj\n")
	b.WriteString("4 0 obj << /Length " + strconv.Itoa(n) + " >> stream\n")
	b.Write(noise)
	b.WriteString("\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
	return b.Bytes()
}

// doveadm runs doveadm against the suite's Dovecot.
func doveadm(ctx context.Context, stdin []byte, args ...string) (string, error) {
	return mailsys.Doveadm(ctx, suite.vars["DOVECOT_CONF"], stdin, args...)
}

// deliver saves raw into user's INBOX with doveadm save, as a local
// delivery agent would. Dovecot must be running.
func deliver(t testing.TB, user string, raw []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := doveadm(ctx, raw, "save", "-u", user); err != nil {
		t.Fatalf("deliver to %s: %v", user, err)
	}
}

// resetMailbox expunges every message of every folder of user, so that a
// scenario starts from an empty mailbox.
func resetMailbox(t testing.TB, user string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := doveadm(ctx, nil, "expunge", "-u", user, "mailbox", "*", "all"); err != nil {
		t.Fatalf("reset mailbox %s: %v", user, err)
	}
}

// countMessages returns how many messages of user's folder match the
// doveadm search query (for example "unseen").
func countMessages(t testing.TB, user, folder string, query ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"search", "-u", user, "mailbox", folder}, query...)
	out, err := doveadm(ctx, nil, args...)
	if err != nil {
		t.Fatalf("count messages: %v", err)
	}
	return len(strings.Fields(out)) / 2 // "GUID UID" per message
}

// sendSMTP submits raw to the suite's Postfix, which delivers to Dovecot
// over LMTP (queueing the mail while Dovecot is down).
func sendSMTP(t testing.TB, from string, to []string, raw []byte) {
	t.Helper()
	if err := smtp.SendMail(suite.vars["SMTP_ADDR"], nil, from, to, raw); err != nil {
		t.Fatalf("send %s -> %v through Postfix: %v", from, to, err)
	}
}

// flushPostfix asks Postfix to retry its deferred mail now.
func flushPostfix(t testing.TB) {
	t.Helper()
	out, err := exec.Command("postqueue", "-c", suite.vars["POSTFIX_CONFIG_DIR"], "-f").CombinedOutput()
	if err != nil {
		t.Fatalf("postqueue -f: %v: %s", err, out)
	}
}

// postfixQueueEmpty reports whether Postfix has delivered everything.
func postfixQueueEmpty(t testing.TB) bool {
	t.Helper()
	out, err := exec.Command("postqueue", "-c", suite.vars["POSTFIX_CONFIG_DIR"], "-j").CombinedOutput()
	if err != nil {
		t.Fatalf("postqueue -j: %v: %s", err, out)
	}
	return len(bytes.TrimSpace(out)) == 0
}

// waitPostfixEmpty waits until Postfix has delivered everything it
// accepted, or timeout; it reports whether it has.
func waitPostfixEmpty(t testing.TB, timeout time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		if postfixQueueEmpty(t) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// stopDovecot and startDovecot stop and start the suite's Dovecot with
// stop.sh and start.sh; the mailboxes survive.
func stopDovecot(t testing.TB) {
	t.Helper()
	if out, err := suite.script("stop.sh", suite.workDir, "dovecot"); err != nil {
		t.Fatalf("stop Dovecot: %v\n%s", err, out)
	}
}

func startDovecot(t testing.TB) {
	t.Helper()
	if out, err := suite.script("start.sh", suite.workDir, "dovecot"); err != nil {
		t.Fatalf("start Dovecot: %v\n%s", err, out)
	}
}

// lmtpMessage is one message for deliverLMTP.
type lmtpMessage struct {
	From, To string
	Raw      []byte
}

// deliverLMTP delivers msgs in order over one LMTP session to the suite's
// Dovecot: much faster than one doveadm process per message, and the
// UIDs follow the order of msgs.
func deliverLMTP(ctx context.Context, msgs []lmtpMessage) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", suite.vars["LMTP_ADDR"])
	if err != nil {
		return fmt.Errorf("lmtp: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	tc := textproto.NewConn(conn)
	if _, _, err := tc.ReadResponse(220); err != nil {
		return fmt.Errorf("lmtp: greeting: %w", err)
	}
	cmd := func(code int, format string, args ...any) error {
		id, err := tc.Cmd(format, args...)
		if err != nil {
			return err
		}
		tc.StartResponse(id)
		defer tc.EndResponse(id)
		if _, _, err := tc.ReadResponse(code); err != nil {
			return fmt.Errorf("lmtp: %s: %w", strings.Fields(format)[0], err)
		}
		return nil
	}
	if err := cmd(250, "LHLO e2e.example.test"); err != nil {
		return err
	}
	for i, m := range msgs {
		if err := cmd(250, "MAIL FROM:<%s>", m.From); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if err := cmd(250, "RCPT TO:<%s>", m.To); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if err := cmd(354, "DATA"); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		w := tc.DotWriter()
		if _, err := w.Write(m.Raw); err != nil {
			return fmt.Errorf("message %d: lmtp: data: %w", i, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("message %d: lmtp: data: %w", i, err)
		}
		// One reply per recipient; there is one.
		if _, _, err := tc.ReadResponse(250); err != nil {
			return fmt.Errorf("message %d: lmtp: delivery: %w", i, err)
		}
	}
	return cmd(221, "QUIT")
}

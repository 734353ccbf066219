package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"mailgate/config"
	"mailgate/devmail"
	"mailgate/userlike/userliketest"
)

// The demo's fixed names and credentials, printed at start so that a mail
// client can connect to both mailboxes.
const (
	demoSupport      = "support@demo.test"
	demoSupportPass  = "support"
	demoCustomer     = "customer@demo.test"
	demoCustomerPass = "customer"
	demoInboundTok   = "demo-inbound-token"
	demoOutboundTok  = "demo-outbound-token"
)

func cmdDemo(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "demo", "[-v]", "run the whole loop in one process: a mailbox, an SMTP relay, a simulated Userlike and mailgate")
	verbose := fs.Bool("v", false, "show mailgate's own log")
	keep := fs.Bool("keep", false, "keep the temporary state directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	out := &lockedWriter{w: env.stdout}

	dir, err := os.MkdirTemp("", "mailgate-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	mailsys, err := devmail.Start(devmail.Options{
		Users: map[string]string{demoSupport: demoSupportPass, demoCustomer: demoCustomerPass},
		Delivered: func(user string, raw []byte) {
			if user == demoCustomer {
				printCustomerMail(out, raw)
			}
		},
	})
	if err != nil {
		return err
	}
	defer mailsys.Close()

	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	httpAddr := httpLn.Addr().String()
	httpLn.Close() // mailgate binds it again; the port is free on loopback

	center := userliketest.New(userliketest.Options{
		InboundToken:  demoInboundTok,
		OutboundURL:   "http://" + httpAddr + "/userlike/demo",
		OutboundToken: demoOutboundTok,
		Out:           out,
	})
	ulLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ulSrv := &http.Server{Handler: center, ReadHeaderTimeout: 10 * time.Second}
	go ulSrv.Serve(ulLn)
	defer ulSrv.Close()

	toml := fmt.Sprintf(`
[server]
listen = %q
[metrics]
listen = ""
[store]
path = %q
[[channel]]
name = "demo"
[channel.userlike]
inbound_url = "http://%s/inbound"
inbound_token = %q
outbound_token = %q
[channel.imap]
address = %q
security = "none"
username = %q
password = %q
poll_interval = "30s"
start = "all"
[channel.smtp]
address = %q
security = "none"
from = "Demo Support <%s>"
coalesce = "2s"
[channel.verify]
allow = ["demo.test"]
`, httpAddr, filepath.Join(dir, "mailgate.db"), ulLn.Addr(), demoInboundTok, demoOutboundTok,
		mailsys.IMAPAddr(), demoSupport, demoSupportPass, mailsys.SMTPAddr(), demoSupport)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(toml), 0o600); err != nil {
		return err
	}
	cfg, err := config.Parse(cfgPath, []byte(toml), config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		return err
	}
	logOut := io.Discard
	if *verbose {
		logOut = out
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dctx, cancel := context.WithCancel(ctx)
	d, err := startDaemon(dctx, daemonOptions{Config: cfg, ConfigPath: cfgPath, Logger: log})
	if err != nil {
		cancel()
		return err
	}
	defer func() { cancel(); d.wait() }()
	d.waitAttempted(ctx)

	fmt.Fprintf(out, `mailgate demo: everything runs in this process, on 127.0.0.1 only.

  support mailbox  IMAP %s  user %s  password %s
  customer mailbox IMAP %s  user %s  password %s
  SMTP relay       %s (no auth)
  mailgate         http://%s  (webhook /userlike/demo, media /media/)
  Userlike (sim.)  http://%s/inbound
  state            %s

Type:
  /mail <text>    the customer mails the support address
  /attach FILE    attach FILE to the next /mail
  /quit           stop
  anything else   the operator answers the last customer in Userlike

`, mailsys.IMAPAddr(), demoSupport, demoSupportPass, mailsys.IMAPAddr(), demoCustomer, demoCustomerPass,
		mailsys.SMTPAddr(), httpAddr, ulLn.Addr(), dir)

	var attach string
	n, run := 0, time.Now().UnixNano()
	return console(ctx, env.stdin, out, func(ctx context.Context, line string) {
		switch {
		case line == "/quit":
			stop()
		case strings.HasPrefix(line, "/attach "):
			attach = strings.TrimSpace(strings.TrimPrefix(line, "/attach "))
			fmt.Fprintf(out, "the next /mail carries %s\n", attach)
		case strings.HasPrefix(line, "/mail"):
			n++
			text := strings.TrimSpace(strings.TrimPrefix(line, "/mail"))
			raw, err := demoMail(run, n, text, attach)
			attach = ""
			if err != nil {
				fmt.Fprintf(out, "cannot build the email: %v\n", err)
				return
			}
			before := len(center.Conversation(demoCustomer))
			if _, err := mailsys.Deliver(demoSupport, "INBOX", raw); err != nil {
				fmt.Fprintf(out, "delivery failed: %v\n", err)
				return
			}
			fmt.Fprintf(out, "[mailbox] the customer's email %d is in the support INBOX\n", n)
			// Wait until Userlike shows it, so the console reads in order.
			for deadline := time.Now().Add(15 * time.Second); len(center.Conversation(demoCustomer)) == before && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
		default:
			to := center.LastContact()
			if to == "" {
				to = demoCustomer
			}
			if code, err := center.Reply(ctx, to, line); err != nil || code != http.StatusOK {
				fmt.Fprintf(out, "the webhook did not accept the reply: HTTP %d %v\n", code, err)
			}
		}
	})
}

// demoMail builds the customer's n-th email; all but the first reply to the
// first, as a mail client would.
func demoMail(run int64, n int, text, attach string) ([]byte, error) {
	if text == "" {
		text = "Hello, I have a question about my order."
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Casey Customer <%s>\r\nTo: Demo Support <%s>\r\nDate: %s\r\nMessage-ID: <demo-%d.%d@demo.test>\r\n",
		demoCustomer, demoSupport, time.Now().Format(time.RFC1123Z), n, run)
	if n == 1 {
		b.WriteString("Subject: Question about my order\r\n")
	} else {
		fmt.Fprintf(&b, "Subject: Re: Question about my order\r\nIn-Reply-To: <demo-1.%d@demo.test>\r\n", run)
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	if attach == "" {
		fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", text)
		return b.Bytes(), nil
	}
	data, err := os.ReadFile(attach)
	if err != nil {
		return nil, err
	}
	ctype := mime.TypeByExtension(filepath.Ext(attach))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=demo\r\n\r\n--demo\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n")
	fmt.Fprintf(&b, "--demo\r\nContent-Type: %s\r\nContent-Disposition: %s\r\nContent-Transfer-Encoding: base64\r\n\r\n",
		ctype, mime.FormatMediaType("attachment", map[string]string{"filename": filepath.Base(attach)}))
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--demo--\r\n")
	return b.Bytes(), nil
}

// printCustomerMail shows a reply as it lands in the customer's mailbox.
func printCustomerMail(w io.Writer, raw []byte) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		fmt.Fprintf(w, "[customer mailbox] unreadable email: %v\n", err)
		return
	}
	dec := new(mime.WordDecoder)
	from, _ := dec.DecodeHeader(m.Header.Get("From"))
	subject, _ := dec.DecodeHeader(m.Header.Get("Subject"))
	fmt.Fprintf(w, "[customer mailbox] new email\n    From: %s\n    Subject: %s\n    In-Reply-To: %s\n    References: %s\n",
		from, subject, m.Header.Get("In-Reply-To"), m.Header.Get("References"))
}

// lockedWriter serialises writes from the console, the simulated Userlike
// and the mailbox.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

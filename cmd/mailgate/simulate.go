package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"mailgate/userlike/userliketest"
)

func cmdSimulateUserlike(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "simulate-userlike", "-listen ADDR -outbound-url URL -inbound-token T -outbound-token T",
		"run a simulated Userlike Message Center to try a real mailbox before connecting Userlike")
	listen := fs.String("listen", "127.0.0.1:8090", "`address` of the simulated Inbound URL")
	outURL := fs.String("outbound-url", "", "mailgate's webhook `URL`: <public_url>/userlike/<channel>")
	inTok := fs.String("inbound-token", "", "the channel's inbound_token")
	outTok := fs.String("outbound-token", "", "the channel's outbound_token")
	operator := fs.String("operator", "Olivia", "operator `name` for replies")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *outURL == "" || *inTok == "" || *outTok == "" {
		fs.Usage()
		return usageError{errors.New("mailgate simulate-userlike: -outbound-url, -inbound-token and -outbound-token are required")}
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	center := userliketest.New(userliketest.Options{InboundToken: *inTok, OutboundURL: *outURL, OutboundToken: *outTok, Out: env.stdout, Operator: *operator})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: center, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Fprintf(env.stdout, "Simulated Userlike Message Center\n  Inbound URL: http://%s/inbound (set channel.userlike.inbound_url to it)\n  replies go to %s\nType a line to reply to the last customer, or \"@jane@example.com text\" to reply to one.\n", ln.Addr(), *outURL)
	return console(ctx, env.stdin, env.stdout, func(ctx context.Context, line string) {
		to := center.LastContact()
		if rest, ok := strings.CutPrefix(line, "@"); ok {
			to, line, _ = strings.Cut(rest, " ")
		}
		if to == "" {
			fmt.Fprintln(env.stdout, "no customer yet: wait for an email, or write \"@address text\"")
			return
		}
		code, err := center.Reply(ctx, to, line)
		if err != nil || code != http.StatusOK {
			fmt.Fprintf(env.stdout, "reply not accepted: HTTP %d %v\n", code, err)
		}
	})
}

// console feeds the non-empty lines of in to handle until EOF or ctx ends.
func console(ctx context.Context, in io.Reader, out io.Writer, handle func(context.Context, string)) error {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				<-ctx.Done()
				return nil
			}
			if line = strings.TrimSpace(line); line != "" {
				handle(ctx, line)
			}
		}
	}
}

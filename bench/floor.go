package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapFloorRun is the IMAP floor of the backlog: a bare go-imap client
// logs in, selects the mailbox read-only and fetches BODY.PEEK[] of every
// message in one UID FETCH, discarding the bytes. Nothing that reads the
// mailbox can be faster on this server; mailgate's backlog rate is
// reported as a ratio of it. It returns the time from dial to the last
// byte and the number of messages read.
func (b *bench) imapFloorRun(ctx context.Context) (time.Duration, int, error) {
	settleDisk()
	start := time.Now()
	c, err := imapclient.DialInsecure(b.mail.imapAddr(), nil)
	if err != nil {
		return 0, 0, fmt.Errorf("floor: dial: %w", err)
	}
	defer c.Close()
	if err := c.Login(backlogUser, b.mail.password()).Wait(); err != nil {
		return 0, 0, fmt.Errorf("floor: login: %w", err)
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return 0, 0, fmt.Errorf("floor: select: %w", err)
	}
	all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
	fetch := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	n := 0
	for {
		msg := fetch.Next()
		if msg == nil {
			break
		}
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			if body, ok := item.(imapclient.FetchItemDataBodySection); ok && body.Literal != nil {
				if _, err := io.Copy(io.Discard, body.Literal); err != nil {
					return 0, 0, fmt.Errorf("floor: read message: %w", err)
				}
			}
		}
		n++
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
	}
	if err := fetch.Close(); err != nil {
		return 0, 0, fmt.Errorf("floor: fetch: %w", err)
	}
	return time.Since(start), n, nil
}

package imapsync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// SentFolderAuto asks SentFolder to find the folder marked \Sent.
const SentFolderAuto = "auto"

// sentFallbacks are tried, in order, when no folder is marked \Sent.
var sentFallbacks = []string{"Sent", "Sent Items", "Sent Messages", "INBOX.Sent"}

// SentFolder appends the replies mailgate sends to a folder of the channel's
// mailbox, so that humans looking at the mailbox see the whole
// conversation. Each append uses a short-lived connection.
type SentFolder struct {
	opts   Options
	folder string

	mu       sync.Mutex
	resolved string
}

// NewSentFolder returns a SentFolder for the server and credentials of
// opts (Channel, Address, Security, TLSConfig, Auth and Dial are used).
// folder is a folder name or SentFolderAuto.
func NewSentFolder(opts Options, folder string) (*SentFolder, error) {
	if opts.Address == "" || opts.Auth == nil || folder == "" {
		return nil, fmt.Errorf("imapsync: channel %q: sent folder needs an address, credentials and a folder", opts.Channel)
	}
	// The watcher's defaults (dialer with keepalive, security) apply; the
	// folder-watching fields are not needed here.
	opts.Folders = []string{"INBOX"}
	opts.Cursors, opts.Handler = noCursors{}, noHandler{}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &SentFolder{opts: o, folder: folder}, nil
}

// AppendSent appends raw to the folder, flagged \Seen, creating the folder
// when a named one is missing.
func (s *SentFolder) AppendSent(ctx context.Context, raw []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, stop, err := dialClient(ctx, &s.opts, &imapclient.Options{})
	if err != nil {
		return fmt.Errorf("imap: append to sent folder: %w", err)
	}
	defer stop()
	if err := s.opts.Auth.Authenticate(ctx, c); err != nil {
		return fmt.Errorf("imap: append to sent folder: %w", err)
	}
	folder, err := s.resolve(c)
	if err != nil {
		return err
	}
	cmd := c.Append(folder, int64(len(raw)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: time.Now()})
	if _, err := cmd.Write(raw); err != nil {
		cmd.Close()
		return fmt.Errorf("imap: append to %q: %w", folder, err)
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("imap: append to %q: %w", folder, err)
	}
	if _, err := cmd.Wait(); err != nil {
		return fmt.Errorf("imap: append to %q: %w", folder, err)
	}
	_ = c.Logout().Wait()
	return nil
}

// resolve finds (once) the folder to append to.
func (s *SentFolder) resolve(c *imapclient.Client) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resolved != "" {
		return s.resolved, nil
	}
	fl, err := listFolders(c)
	if err != nil {
		return "", fmt.Errorf("imap: %w", err)
	}
	exists := func(name string) bool {
		return slices.ContainsFunc(fl, func(d *imap.ListData) bool { return strings.EqualFold(d.Mailbox, name) })
	}
	name := s.folder
	if name == SentFolderAuto {
		ns, err := personalNamespace(c)
		if err != nil {
			return "", fmt.Errorf("imap: %w", err)
		}
		name = fl.sentFolder(ns)
	}
	if !exists(name) {
		if err := c.Create(name, nil).Wait(); err != nil {
			return "", fmt.Errorf("imap: create sent folder %q: %w", name, err)
		}
	}
	s.resolved = name
	return name, nil
}

type noCursors struct{}

func (noCursors) Cursor(context.Context, string) (Cursor, error)    { return Cursor{}, nil }
func (noCursors) StartFolder(context.Context, string, Cursor) error { return nil }

type noHandler struct{}

func (noHandler) Handle(context.Context, *Message) error { return nil }
func (noHandler) UIDValidityChanged(context.Context, string, uint32, uint32) error {
	return nil
}

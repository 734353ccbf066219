package bridge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"mailgate/config"
	"mailgate/imapsync"
	"mailgate/inbound"
	"mailgate/mailparse"
	"mailgate/media"
	"mailgate/oauthgrant"
	"mailgate/outbound"
	"mailgate/store"
	"mailgate/userlike"
	"mailgate/verify"
)

// Deps are what Build needs beyond the configuration: the installation's
// shared parts and the daemon's hooks.
type Deps struct {
	DB    *store.DB
	Media *media.Library
	// MediaURL signs the URL of a stored media file.
	MediaURL func(ctx context.Context, id string) (string, error)
	// IsOwnMessageID recognises mailgate's Message-IDs.
	IsOwnMessageID func(string) bool
	// Resolver answers the verifier's DNS queries; nil uses the system
	// resolver with a 10-minute cache.
	Resolver verify.Resolver
	// UserAgent is sent with every POST to Userlike.
	UserAgent string
	// LoginCommand is the command that `mailgate oauth login` for this
	// channel is, for the login-needed message.
	LoginCommand string
	// OnBounce gets the trusted bounces of the channel, to match them to
	// replies.
	OnBounce func(ctx context.Context, report *mailparse.Report, raw []byte)
	// Observe gets the outcome of every email, for metrics.
	Observe func(inbound.Outcome)
	Logger  *slog.Logger

	// DrainTimeout is the poster's inbound.Options.DrainTimeout (0: its
	// default).
	DrainTimeout time.Duration
}

// Channel is one channel's parts, built and wired to each other but not
// running: run Watcher.Run and Pipeline.Run to start it.
type Channel struct {
	Config config.Channel
	// Grant is the channel's OAuth2 token source; nil with passwords.
	Grant    *oauthgrant.Source
	Outbound outbound.Channel
	Pipeline *inbound.Pipeline
	Watcher  *imapsync.Watcher
}

// Build builds channel ch of cfg.
func Build(cfg *config.Config, ch config.Channel, deps Deps) (*Channel, error) {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	chLog := log.With("channel", ch.Name)
	resolver := deps.Resolver
	if resolver == nil {
		resolver = verify.NewCachingResolver(verify.NetResolver(), 10*time.Minute, 1024)
	}
	analyzer, err := NewAnalyzer(cfg, &ch, AnalyzerDeps{
		Resolver:       resolver,
		Sink:           mediaSink{lib: deps.Media, channel: ch.Name},
		IsOwnMessageID: deps.IsOwnMessageID,
	})
	if err != nil {
		return nil, err
	}
	client := userlike.NewClient(userlike.ClientOptions{
		InboundURL: ch.Userlike.InboundURL,
		Token:      ch.Userlike.InboundToken.Reveal(),
		UserAgent:  deps.UserAgent,
	})
	c := &Channel{Config: ch}
	if ch.OAuth2.Enabled() {
		c.Grant, err = oauthgrant.New(oauthgrant.Options{
			Channel:      ch.Name,
			Config:       ch.OAuth2,
			DB:           deps.DB,
			LoginCommand: deps.LoginCommand,
			OnLoginNeeded: func(e *oauthgrant.LoginNeededError) {
				// The one loud line; IMAP and SMTP only note the failure.
				chLog.Error(e.Error() + "; mail waits in the mailbox and replies in the outbox until then")
			},
		})
		if err != nil {
			return nil, err
		}
	}
	if c.Outbound, err = NewOutbound(cfg, ch, client, c.Grant, log); err != nil {
		return nil, err
	}
	after := store.Action{Kind: string(ch.IMAP.After), Dest: ch.IMAP.MoveTo}
	if ch.IMAP.After == config.AfterNone {
		after = store.Action{}
	}
	quarantine := store.Action{Kind: "move", Dest: ch.IMAP.QuarantineFolder}
	if ch.Verify.OnFail == config.OnFailReject {
		quarantine = store.Action{Kind: "flag"}
	}
	c.Pipeline, err = inbound.New(inbound.Options{
		Channel:        ch.Name,
		DB:             deps.DB,
		Analyzer:       analyzer,
		Client:         client,
		MediaURL:       deps.MediaURL,
		After:          after,
		Quarantine:     quarantine,
		RateLimit:      ch.Inbound.RateLimit,
		RateWindow:     ch.Inbound.RateWindow.Duration,
		SubjectLine:    ch.Inbound.Subject == config.SubjectFirstLine,
		AttachOriginal: string(ch.Inbound.AttachOriginal),
		StoreOriginal: func(ctx context.Context, raw []byte) (string, error) {
			rec, err := deps.Media.Put(ctx, media.PutMeta{Filename: "original-message.eml", ContentType: "message/rfc822", Channel: ch.Name}, bytes.NewReader(raw))
			if err != nil {
				return "", err
			}
			return rec.ID, nil
		},
		SyncMedia: deps.Media.Sync,
		RemoveMedia: func(ctx context.Context, ids []string) error {
			_, err := deps.Media.Remove(ctx, ids)
			return err
		},
		Notify:   func() { c.Watcher.Notify() },
		Observe:  deps.Observe,
		OnBounce: deps.OnBounce,
		Logger:   log,

		DrainTimeout: deps.DrainTimeout,
	})
	if err != nil {
		return nil, err
	}
	wopts := IMAPOptions(ch, c.Grant)
	wopts.PollInterval = ch.IMAP.PollInterval.Duration
	wopts.IdleRefresh = ch.IMAP.IdleRefresh.Duration
	wopts.MaxMessageSize = int64(cfg.Media.MaxMessageSize)
	wopts.Cursors, wopts.Handler, wopts.Actions, wopts.Refetches, wopts.Preparer = c.Pipeline, c.Pipeline, c.Pipeline, c.Pipeline, c.Pipeline
	wopts.Logger = log
	if c.Watcher, err = imapsync.NewWatcher(wopts); err != nil {
		return nil, fmt.Errorf("channel %q: %w", ch.Name, err)
	}
	return c, nil
}

// Warnings are what an admin should know about channel ch's settings
// before it runs: verification settings that verify nobody.
func Warnings(ch config.Channel) []string {
	switch {
	case ch.Verify.Require == config.RequireNone:
		return []string{`verify.require = "none": senders are NOT verified, so anyone can post under any address and read that contact's earlier conversations`}
	case len(ch.Verify.TrustedAuthservIDs) == 0 && !ch.Verify.DKIM && len(ch.Verify.Allow) == 0:
		return []string{"verify: no trusted_authserv_ids, no dkim and no allow list: no sender can be verified, so every email will be quarantined; see doc/verification.md"}
	}
	return nil
}

// mediaSink stores the attachments of inbound emails in the media library.
type mediaSink struct {
	lib     *media.Library
	channel string
}

func (s mediaSink) Put(ctx context.Context, a *mailparse.Attachment, r io.Reader) (string, error) {
	rec, err := s.lib.Put(ctx, media.PutMeta{Filename: a.Filename, ContentType: a.ContentType, Channel: s.channel}, r)
	if err != nil {
		return "", err
	}
	return rec.ID, nil
}

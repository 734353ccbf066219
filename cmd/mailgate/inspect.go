package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"mailgate/bridge"
	"mailgate/bridge/mailparse"
	"mailgate/bridge/verify"
	"mailgate/config"
)

func cmdInspect(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "inspect", "[-c FILE] [-channel NAME] FILE.eml|-", "print as JSON what mailgate would do with an email, without network or state changes")
	path := fs.String("c", "", "configuration `file`; without it, the defaults apply")
	channel := fs.String("channel", "", "the channel whose settings apply (default: the first)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{fmt.Errorf("mailgate inspect: want one email file, or - for standard input")}
	}
	var raw []byte
	var err error
	if name := fs.Arg(0); name == "-" {
		raw, err = io.ReadAll(env.stdin)
	} else {
		raw, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("read email: %w", err)
	}

	opts := inspectSettings{Require: "dmarc", MaxSize: 25 << 20, MaxCount: 20, Subject: "first-line", Lists: "skip"}
	if *path != "" {
		cfg, err := loadConfig(env, *path)
		if err != nil {
			return err
		}
		ch := &cfg.Channels[0]
		if *channel != "" {
			var ok bool
			if ch, ok = cfg.Channel(*channel); !ok {
				return usageError{fmt.Errorf("%s: no channel %q", *path, *channel)}
			}
		}
		opts = settingsFromConfig(cfg, ch)
	} else if *channel != "" {
		return usageError{fmt.Errorf("mailgate inspect: -channel needs -c")}
	}
	d, err := inspectEmail(ctx, raw, opts)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}

// inspectSettings are the channel settings that change a Decision.
type inspectSettings struct {
	TrustedAuthservIDs []string
	Require            string
	Allow              []string
	SelfDKIM           bool
	MaxSize            int64
	MaxCount           int
	Subject            string
	Lists              string
	Resolver           verify.Resolver
}

func settingsFromConfig(cfg *config.Config, ch *config.Channel) inspectSettings {
	return inspectSettings{
		TrustedAuthservIDs: ch.Verify.TrustedAuthservIDs,
		Require:            ch.Verify.Require,
		Allow:              ch.Verify.Allow,
		SelfDKIM:           ch.Verify.DKIM,
		MaxSize:            int64(cfg.Media.MaxSize),
		MaxCount:           cfg.Media.MaxCount,
		Subject:            ch.Inbound.Subject,
		Lists:              ch.Inbound.MailingLists,
	}
}

// inspectEmail analyzes raw as the daemon would, with attachments measured
// but not stored. With self DKIM on, it looks up DNS keys (read-only).
func inspectEmail(ctx context.Context, raw []byte, s inspectSettings) (*bridge.Decision, error) {
	resolver := s.Resolver
	if resolver == nil {
		resolver = verify.NetResolver()
	}
	v, err := verify.New(verify.Options{
		TrustedAuthservIDs: s.TrustedAuthservIDs,
		Require:            s.Require,
		Allow:              s.Allow,
		SelfDKIM:           s.SelfDKIM,
		Resolver:           resolver,
	})
	if err != nil {
		return nil, err
	}
	a, err := bridge.NewAnalyzer(bridge.AnalyzerOptions{
		Verifier:         v,
		Parse:            mailparse.Options{MaxAttachmentSize: s.MaxSize, MaxAttachments: s.MaxCount},
		PostMailingLists: s.Lists == "post",
		SubjectLine:      s.Subject == "first-line",
	})
	if err != nil {
		return nil, err
	}
	return a.Analyze(ctx, raw), nil
}

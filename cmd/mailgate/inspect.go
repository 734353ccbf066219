package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mailgate/bridge"
	"os"

	"mailgate/config"
	"mailgate/inbound"
	"mailgate/verify"
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

	// Without a configuration file, the defaults of a channel apply.
	cfg := &config.Config{Media: config.Media{MaxSize: 25 << 20, MaxCount: 20}}
	ch := &config.Channel{
		Verify:  config.Verify{Require: "dmarc"},
		Inbound: config.Inbound{Subject: "first-line", MailingLists: "skip"},
	}
	if *path != "" {
		if cfg, err = loadConfig(env, *path); err != nil {
			return err
		}
		ch = &cfg.Channels[0]
		if *channel != "" {
			var ok bool
			if ch, ok = cfg.Channel(*channel); !ok {
				return usageError{fmt.Errorf("%s: no channel %q", *path, *channel)}
			}
		}
	} else if *channel != "" {
		return usageError{fmt.Errorf("mailgate inspect: -channel needs -c")}
	}
	d, err := inspectEmail(ctx, raw, cfg, ch, verify.NetResolver())
	if err != nil {
		return err
	}
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}

// inspectEmail analyzes raw exactly as the daemon would for channel ch
// (bridge.NewAnalyzer), with attachments measured but not stored. With self DKIM
// on, it looks up DNS keys (read-only) through resolver.
func inspectEmail(ctx context.Context, raw []byte, cfg *config.Config, ch *config.Channel, resolver verify.Resolver) (*inbound.Decision, error) {
	a, err := bridge.NewAnalyzer(cfg, ch, bridge.AnalyzerDeps{Resolver: resolver})
	if err != nil {
		return nil, err
	}
	return a.Analyze(ctx, raw), nil
}

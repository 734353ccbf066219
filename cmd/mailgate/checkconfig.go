package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mailgate/bridge"
	"strings"
	"time"

	"mailgate/imapsync"
	"mailgate/oauthgrant"
	"mailgate/smtpout"
	"mailgate/store"

	"mailgate/config"
)

func cmdCheckConfig(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "check-config", "[-c FILE]", "load and validate the configuration, print one line per channel")
	path := configFlag(env, fs)
	connect := fs.Bool("connect", false, "also log in to IMAP and SMTP and check the folders (creating the ones mailgate writes to), sending nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(env.stderr, "warning: %s\n", w)
	}
	if err := placeholderError(cfg); err != nil {
		return err
	}
	for _, line := range cfg.Summary() {
		fmt.Fprintln(env.stdout, line)
	}
	if *connect && !checkConnections(ctx, env.stdout, cfg, *path) {
		return errors.New("some connection checks failed")
	}
	return nil
}

// checkConnections logs in to every channel's IMAP server and SMTP relay
// and prints each step as ok or FAILED with the server's words. It sends
// nothing; the only changes it makes are to create a missing folder that
// mailgate writes to (quarantine, move_to, sent), as the daemon would, and,
// for a channel with [channel.oauth2], to obtain an access token, which
// records the refresh (and a rotated refresh token) in the store. With
// [store] driver = "postgres" it connects to the database first (creating
// mailgate's tables in a new one).
func checkConnections(ctx context.Context, w io.Writer, cfg *config.Config, configPath string) bool {
	ok := true
	report := func(ch, name string, err error, note string) {
		switch {
		case err != nil:
			ok = false
			fmt.Fprintf(w, "  FAILED  %s: %s: %v\n", ch, name, err)
			if note != "" {
				fmt.Fprintf(w, "          %s\n", note)
			}
		case note != "":
			fmt.Fprintf(w, "  ok      %s: %s (%s)\n", ch, name, note)
		default:
			fmt.Fprintf(w, "  ok      %s: %s\n", ch, name)
		}
	}
	var db *store.DB
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	if cfg.Store.Driver == config.StorePostgres {
		// The shared store: reachable, and its schema created or up to
		// date (as the daemon would make it).
		var err error
		note := ""
		if db, err = openDB(ctx, cfg); err == nil {
			var v int
			v, err = db.SchemaVersion(ctx)
			note = fmt.Sprintf("%s, schema version %d", db.Path(), v)
		}
		report("store", "postgres: connect", err, note)
	}
	for _, ch := range cfg.Channels {
		var grant *oauthgrant.Source
		if ch.OAuth2.Enabled() {
			var err error
			if db == nil {
				db, err = openDB(ctx, cfg)
			}
			if err == nil {
				grant, err = oauthgrant.New(oauthgrant.Options{Channel: ch.Name, Config: ch.OAuth2, DB: db, LoginCommand: loginCommand(configPath, ch.Name)})
			}
			if err == nil {
				tctx, cancel := context.WithTimeout(ctx, time.Minute)
				_, err = grant.Token(tctx)
				cancel()
			}
			report(ch.Name, fmt.Sprintf("oauth2: obtain an access token (%s, %s)", ch.OAuth2.Grant(), ch.OAuth2.TokenURL), err, "")
			if err != nil {
				continue
			}
		}
		for _, st := range imapsync.Check(ctx, bridge.IMAPOptions(ch, grant), imapsync.CheckOptions{SentFolder: ch.SMTP.SentFolder}) {
			report(ch.Name, "imap: "+st.Name, st.Err, st.Note)
		}
		sender, err := smtpout.NewSender(bridge.SenderOptions(ch, grant))
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			err = sender.Check(cctx)
			cancel()
		}
		report(ch.Name, fmt.Sprintf("smtp: connect to %s (%s) and log in", ch.SMTP.Address, ch.SMTP.Security), err, "")
	}
	return ok
}

// placeholderError returns a usage error listing the keys of cfg that
// still hold an example value of config.example.toml, or nil when none do.
func placeholderError(cfg *config.Config) error {
	if len(cfg.Placeholders) == 0 {
		return nil
	}
	return usageError{fmt.Errorf("%s\nedit these %d values (copied from config.example.toml) before running mailgate",
		strings.Join(cfg.Placeholders, "\n"), len(cfg.Placeholders))}
}

// loadConfig loads the configuration file; its errors are usage errors
// (exit status 2) that name the file, the line and the key.
func loadConfig(env *environment, path string) (*config.Config, error) {
	cfg, err := config.Load(path, config.Options{Getenv: env.getenv})
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

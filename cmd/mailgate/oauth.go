package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"mailgate/config"
	"mailgate/oauthgrant"
	"mailgate/store"
)

func cmdOAuth(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "oauth", "login -c FILE -channel NAME | status [-c FILE]",
		"log a channel in with OAuth2 (delegated grants), or show each channel's grant, expiry and last refresh")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch fs.Arg(0) {
	case "login":
		return cmdOAuthLogin(ctx, env, fs.Args()[1:])
	case "status":
		return cmdOAuthStatus(ctx, env, fs.Args()[1:])
	case "":
		fs.Usage()
		return usageError{errors.New("mailgate oauth: want a subcommand: login or status")}
	}
	return usageError{fmt.Errorf("mailgate oauth: unknown subcommand %q (want login or status)", fs.Arg(0))}
}

func cmdOAuthLogin(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "oauth login", "-c FILE -channel NAME",
		"run the channel's OAuth2 login once (device code, or browser login with the redirect address pasted back) and store the grant")
	path := configFlag(env, fs)
	name := fs.String("channel", "", "the `channel` to log in")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, ch, err := oauthChannel(env, *path, *name)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	g, err := oauthgrant.Login(ctx, oauthgrant.LoginOptions{Channel: ch.Name, Config: ch.OAuth2, DB: db, Out: env.stdout, In: env.stdin})
	if err != nil {
		return err
	}
	printGrant(env.stdout, g, "")
	fmt.Fprintln(env.stdout, "a running daemon picks the grant up at its next connection attempt")
	return nil
}

func cmdOAuthStatus(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "oauth status", "[-c FILE]", "show each OAuth2 channel's grant, token expiry and last refresh")
	path := configFlag(env, fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, db, err := openStore(ctx, env, *path)
	if err != nil {
		return err
	}
	defer db.Close()
	n := 0
	for _, ch := range cfg.Channels {
		g, err := channelGrant(ctx, db, ch)
		if err != nil {
			return err
		}
		if g == nil {
			continue
		}
		n++
		fmt.Fprintf(env.stdout, "channel %q: %s %s\n", ch.Name, ch.OAuth2.Provider, ch.OAuth2.Mode)
		printGrant(env.stdout, g, loginCommand(*path, ch.Name))
	}
	if n == 0 {
		fmt.Fprintln(env.stdout, "no channel has [channel.oauth2]")
	}
	return nil
}

// oauthChannel loads the configuration and finds channel name, which must
// have [channel.oauth2].
func oauthChannel(env *environment, path, name string) (*config.Config, *config.Channel, error) {
	if name == "" {
		return nil, nil, usageError{errors.New("mailgate oauth login: -channel is required")}
	}
	cfg, err := loadConfig(env, path)
	if err != nil {
		return nil, nil, err
	}
	ch, ok := cfg.Channel(name)
	if !ok {
		return nil, nil, usageError{fmt.Errorf("mailgate oauth login: %s has no channel %q", path, name)}
	}
	if !ch.OAuth2.Enabled() {
		return nil, nil, usageError{fmt.Errorf("mailgate oauth login: channel %q has no [channel.oauth2]", name)}
	}
	return cfg, ch, nil
}

// channelGrant is the stored grant of a channel with [channel.oauth2]: for
// a delegated grant never logged in, one that says so; nil for a channel
// with passwords.
func channelGrant(ctx context.Context, db *store.DB, ch config.Channel) (*store.OAuthGrant, error) {
	if !ch.OAuth2.Enabled() {
		return nil, nil
	}
	grant := ch.OAuth2.Grant()
	g, err := db.OAuthGrant(ctx, ch.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		g = &store.OAuthGrant{Channel: ch.Name, Kind: string(grant)}
		if grant.Delegated() {
			g.LoginNeeded, g.LoginReason = true, "no login yet"
		}
	case err != nil:
		return nil, err
	case grant.Delegated() && !g.HasRefreshToken && !g.LoginNeeded:
		g.LoginNeeded, g.LoginReason = true, "no login yet"
	}
	return g, nil
}

// printGrant writes the lines of `status` and `oauth status` about a
// grant; command, when set, is named when a login is needed.
func printGrant(w io.Writer, g *store.OAuthGrant, command string) {
	if g.LoginNeeded {
		fmt.Fprintf(w, "  oauth2: login needed (%s)", g.LoginReason)
		if command != "" {
			fmt.Fprintf(w, ": run %s", command)
		}
		fmt.Fprintln(w)
	}
	expiry := "no access token yet"
	if !g.Expiry.IsZero() {
		if d := time.Until(g.Expiry).Round(time.Second); d > 0 {
			expiry = "access token expires in " + d.String()
		} else {
			expiry = "access token expired " + (-d).String() + " ago"
		}
	}
	fmt.Fprintf(w, "  oauth2: grant %s, %s, last refresh %s\n", g.Kind, expiry, ago(g.LastRefresh))
}

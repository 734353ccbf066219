package main

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"strings"

	"mailgate/media"
	"mailgate/store"
)

// cmdStore runs "mailgate store migrate -to postgres": it copies the SQLite
// store of the configuration (store.path, and the media files in
// media.dir) into the PostgreSQL store of store.dsn, once.
func cmdStore(ctx context.Context, env *environment, args []string) error {
	const summary = "copy the SQLite store (store.path, the media files in media.dir) into the PostgreSQL database of store.dsn, once"
	if len(args) == 0 || args[0] != "migrate" {
		fs := newFlagSet(env, "store", "migrate -to postgres [-c FILE]", summary)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fs.Usage()
			return nil
		}
		fs.Usage()
		return usageError{errors.New("mailgate store: want migrate")}
	}
	fs := newFlagSet(env, "store migrate", "-to postgres [-c FILE]", summary)
	path := configFlag(env, fs)
	to := fs.String("to", "", "the `driver` to copy to: postgres")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *to != "postgres" || fs.NArg() != 0 {
		return usageError{errors.New("mailgate store migrate: want -to postgres and no arguments")}
	}
	cfg, err := loadConfig(env, *path)
	if err != nil {
		return err
	}
	if cfg.Store.DSN.IsZero() {
		return fmt.Errorf("mailgate store migrate: %s sets no store.dsn to copy to", *path)
	}
	if _, err := os.Stat(cfg.Store.Path); err != nil {
		return fmt.Errorf("mailgate store migrate: no SQLite store to copy: %w", err)
	}
	src, err := store.Open(ctx, cfg.Store.Path, store.Options{})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := store.OpenPostgres(ctx, cfg.Store.DSN.Reveal(), store.Options{})
	if err != nil {
		return err
	}
	defer dst.Close()

	// The media contents first: each is stored once (a second run skips
	// it), and the rows that refer to them follow in one transaction.
	sums, err := src.MediaDigests(ctx)
	if err != nil {
		return err
	}
	files, missing := 0, 0
	for _, sum := range sums {
		p := media.ContentPath(cfg.Media.Dir, sum)
		f, err := os.Open(p)
		if errors.Is(err, iofs.ErrNotExist) {
			missing++
			fmt.Fprintf(env.stderr, "warning: media file %s is missing; its URLs will answer 404\n", p)
			continue
		}
		if err != nil {
			return fmt.Errorf("mailgate store migrate: %w", err)
		}
		fi, err := f.Stat()
		if err == nil {
			err = dst.PutMediaBlob(ctx, sum, fi.Size(), f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("mailgate store migrate: media file %s: %w", p, err)
		}
		files++
	}
	stats, err := src.CopyTo(ctx, dst)
	if err != nil {
		return err
	}
	var parts []string
	for _, t := range []string{"inbound", "cursors", "outbox", "threads", "media", "installation_keys", "oauth_grants"} {
		parts = append(parts, fmt.Sprintf("%s %d", t, stats[t]))
	}
	fmt.Fprintf(env.stdout, "copied %s to %s: %s rows; %d media files (%d missing)\n",
		src.Path(), dst.Path(), strings.Join(parts, ", "), files, missing)
	fmt.Fprintf(env.stdout, "set [store] driver = \"postgres\" in %s and start mailgate\n", *path)
	return nil
}

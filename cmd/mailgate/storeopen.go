package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"mailgate/config"
	"mailgate/media"
	"mailgate/store"
)

// openDB opens the store the configuration names: the SQLite file at
// store.path, or the PostgreSQL database at store.dsn.
func openDB(ctx context.Context, cfg *config.Config) (*store.DB, error) {
	return openDBWith(ctx, cfg, store.Options{})
}

// openDBWith is openDB with options; the daemon's store keeps the accept
// log (store.Options.AcceptLog).
func openDBWith(ctx context.Context, cfg *config.Config, opts store.Options) (*store.DB, error) {
	if cfg.Store.Driver == config.StorePostgres {
		return store.OpenPostgres(ctx, cfg.Store.DSN.Reveal(), opts)
	}
	return store.Open(ctx, cfg.Store.Path, opts)
}

// mediaBlobs lets the media library keep file contents in the store: on a
// PostgreSQL store, so that every instance serves every media URL.
type mediaBlobs struct{ db *store.DB }

func (x mediaBlobs) PutMediaBlob(ctx context.Context, sum string, size int64, src io.ReaderAt) error {
	return x.db.PutMediaBlob(ctx, sum, size, src)
}

func (x mediaBlobs) MediaBlob(ctx context.Context, sum string) (io.ReadSeeker, error) {
	r, err := x.db.MediaBlob(ctx, sum)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", media.ErrNotFound, err)
	}
	return r, err
}

func (x mediaBlobs) DeleteMediaBlob(ctx context.Context, sum string) (int64, error) {
	return x.db.DeleteMediaBlob(ctx, sum)
}

// mediaBlobsFor returns where the media library of cfg keeps contents:
// nil (files in media.dir) for SQLite, the store for PostgreSQL.
func mediaBlobsFor(cfg *config.Config, db *store.DB) media.Blobs {
	if cfg.Store.Driver == config.StorePostgres {
		return mediaBlobs{db}
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"time"

	"mailgate/media"
	"mailgate/store"
)

// mediaIndex lets the media library keep its index in the store.
type mediaIndex struct{ db *store.DB }

func mediaRecord(m *store.Media) *media.Record {
	return &media.Record{ID: m.ID, SHA256: m.SHA256, Size: m.Size, ContentType: m.ContentType, Filename: m.Filename, Channel: m.Channel, LedgerID: m.LedgerID, CreatedAt: m.CreatedAt}
}

func (x mediaIndex) PutMedia(ctx context.Context, r *media.Record) error {
	return x.db.PutMedia(ctx, &store.Media{ID: r.ID, SHA256: r.SHA256, Size: r.Size, ContentType: r.ContentType, Filename: r.Filename, Channel: r.Channel, LedgerID: r.LedgerID, CreatedAt: r.CreatedAt})
}

func (x mediaIndex) Media(ctx context.Context, id string) (*media.Record, error) {
	m, err := x.db.Media(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, media.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return mediaRecord(m), nil
}

func (x mediaIndex) ExpiredMedia(ctx context.Context, before time.Time) ([]*media.Record, error) {
	ms, err := x.db.ExpiredMedia(ctx, before)
	if err != nil {
		return nil, err
	}
	out := make([]*media.Record, len(ms))
	for i, m := range ms {
		out[i] = mediaRecord(m)
	}
	return out, nil
}

func (x mediaIndex) DeleteMedia(ctx context.Context, ids []string) error {
	return x.db.DeleteMedia(ctx, ids)
}

func (x mediaIndex) MediaRefs(ctx context.Context, sha256 string) (int, error) {
	return x.db.MediaRefs(ctx, sha256)
}

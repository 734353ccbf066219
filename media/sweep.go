package media

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SweepResult counts what a Sweep removed.
type SweepResult struct {
	Records   int   // index records deleted
	Files     int   // content files deleted (no record referred to them any more)
	Bytes     int64 // size of the deleted content files
	TempFiles int   // abandoned temp files older than an hour deleted
}

// Sweep deletes the records created before olderThan and every file that no
// remaining record refers to, then removes temp files in Dir/tmp older than
// an hour (left by a crash during Put). A file still referenced by a newer
// record is kept. Choose olderThan no later than now minus Options.URLTTL,
// or URLs handed out may stop working before they expire.
//
// It logs one summary line and returns the counts, also on error (what was
// removed until then).
func (l *Library) Sweep(ctx context.Context, olderThan time.Time) (SweepResult, error) {
	var res SweepResult
	err := l.sweepRecords(ctx, olderThan, &res)
	if terr := l.sweepTemp(ctx, &res); err == nil {
		err = terr
	}
	msg := fmt.Sprintf("media: sweep removed %d records, %d files, %d bytes", res.Records, res.Files, res.Bytes)
	switch {
	case err != nil:
		l.log.Error(msg, "temp_files", res.TempFiles, "err", err)
	case res.Records > 0 || res.Files > 0 || res.TempFiles > 0:
		l.log.Info(msg, "temp_files", res.TempFiles)
	default:
		l.log.Debug(msg, "temp_files", res.TempFiles)
	}
	return res, err
}

func (l *Library) sweepRecords(ctx context.Context, olderThan time.Time, res *SweepResult) error {
	recs, err := l.index.ExpiredMedia(ctx, olderThan)
	if err != nil {
		return fmt.Errorf("media: list records before %s: %w", olderThan.Format(time.RFC3339), err)
	}
	return l.removeRecords(ctx, recs, res)
}

// Remove deletes the records with the given ids, and every file no record
// refers to any more, at once rather than when they expire: the media of an
// email that is not posted (quarantined, skipped, dead) must not outlive
// that decision. Unknown ids are ignored. It returns what it removed.
func (l *Library) Remove(ctx context.Context, ids []string) (SweepResult, error) {
	var res SweepResult
	var recs []*Record
	for _, id := range ids {
		rec, err := l.index.Media(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("media: look up %s: %w", id, err)
		}
		recs = append(recs, rec)
	}
	err := l.removeRecords(ctx, recs, &res)
	return res, err
}

// removeRecords deletes recs from the index and the files that no
// remaining record refers to, counting both in res.
func (l *Library) removeRecords(ctx context.Context, recs []*Record, res *SweepResult) error {
	if len(recs) == 0 {
		return nil
	}
	ids := make([]string, 0, len(recs))
	var sums []string
	seen := make(map[string]bool)
	for _, r := range recs {
		ids = append(ids, r.ID)
		if validSHA256(r.SHA256) && !seen[r.SHA256] {
			seen[r.SHA256] = true
			sums = append(sums, r.SHA256)
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.index.DeleteMedia(ctx, ids); err != nil {
		return fmt.Errorf("media: delete %d records: %w", len(ids), err)
	}
	res.Records += len(ids)
	// The records are gone; a file skipped now would never be looked at
	// again, so finish this loop even if ctx is canceled.
	fctx := context.WithoutCancel(ctx)
	var errs []error
	for _, sum := range sums {
		removed, size, err := l.removeIfUnreferenced(fctx, sum)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if removed {
			res.Files++
			res.Bytes += size
		}
	}
	return errors.Join(errs...)
}

// sweepTemp removes Put's temp files that are older than staleTempAge.
func (l *Library) sweepTemp(ctx context.Context, res *SweepResult) error {
	entries, err := os.ReadDir(l.tmpDir)
	if err != nil {
		return fmt.Errorf("media: read %q: %w", l.tmpDir, err)
	}
	cutoff := l.now().Add(-staleTempAge)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("media: sweep temp files: %w", err)
		}
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			continue
		}
		p := filepath.Join(l.tmpDir, e.Name())
		if err := os.Remove(p); err != nil {
			l.log.Warn("media: remove stale temp file", "path", p, "err", err)
			continue
		}
		res.TempFiles++
	}
	return nil
}

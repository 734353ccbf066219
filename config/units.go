package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in the configuration file as a Go
// duration string such as "90s", "5m" or "168h".
type Duration struct {
	time.Duration
}

// UnmarshalText parses a Go duration string ("5m", "1h30m").
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q", text)
	}
	d.Duration = v
	return nil
}

// MarshalText returns the duration in Go syntax, for example "5m0s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// String returns the duration in Go syntax, for example "5m0s".
func (d Duration) String() string { return d.Duration.String() }

// Size is a number of bytes, written in the configuration file as an
// integer (bytes) or a string with a unit: "512B", "64KB" (1000 bytes),
// "64KiB" (1024 bytes), "25MB", "25MiB", "1GB", "1GiB".
type Size int64

// sizeUnit is one accepted unit of a Size.
type sizeUnit struct {
	name string
	mult int64
}

// sizeUnits lists the accepted units, largest first, as String uses them.
func sizeUnits() [7]sizeUnit {
	return [7]sizeUnit{
		{"GiB", 1 << 30},
		{"MiB", 1 << 20},
		{"KiB", 1 << 10},
		{"GB", 1000 * 1000 * 1000},
		{"MB", 1000 * 1000},
		{"KB", 1000},
		{"B", 1},
	}
}

// ParseSize parses a size such as "25MiB", "64KB" or "1024" (bytes).
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	unit := strings.TrimSpace(t[i:])
	mult := int64(1)
	if unit != "" {
		mult = 0
		for _, u := range sizeUnits() {
			if u.name == unit {
				mult = u.mult
				break
			}
		}
		if mult == 0 {
			return 0, fmt.Errorf("invalid size %q (units: B, KB, KiB, MB, MiB, GB, GiB)", s)
		}
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(n * mult), nil
}

// UnmarshalText parses a size such as "25MiB"; see ParseSize.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText returns the size in the form String returns.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String returns the size with the largest unit that divides it exactly,
// for example "25MiB", "64KB" or "1000001B".
func (s Size) String() string {
	if s == 0 {
		return "0B"
	}
	if s < 0 {
		return strconv.FormatInt(int64(s), 10) + "B"
	}
	for _, u := range sizeUnits() {
		if int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B" // unreachable: "B" divides everything
}

// StartPoint is [channel.imap] start. The zero StartPoint is "now".
type StartPoint struct {
	// All posts everything a folder holds ("all").
	All bool
	// Since, when All is false, posts the mail that arrived within Since
	// before the start ("7d"); 0 posts none of it ("now").
	Since time.Duration
}

// UnmarshalText parses "now", "all", a number of days ("7d") or a Go
// duration ("36h").
func (s *StartPoint) UnmarshalText(text []byte) error {
	t := string(text)
	switch t {
	case "now":
		*s = StartPoint{}
		return nil
	case "all":
		*s = StartPoint{All: true}
		return nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(t, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 36500 {
			return fmt.Errorf("invalid start %q: want \"now\", \"all\" or a duration such as \"7d\" or \"36h\"", t)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		v, err := time.ParseDuration(t)
		if err != nil || v <= 0 {
			return fmt.Errorf("invalid start %q: want \"now\", \"all\" or a duration such as \"7d\" or \"36h\"", t)
		}
		d = v
	}
	*s = StartPoint{Since: d}
	return nil
}

// String returns the start point as written in the configuration.
func (s StartPoint) String() string {
	switch {
	case s.All:
		return "all"
	case s.Since == 0:
		return "now"
	case s.Since%(24*time.Hour) == 0:
		return strconv.Itoa(int(s.Since/(24*time.Hour))) + "d"
	}
	return s.Since.String()
}

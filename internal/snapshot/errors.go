package snapshot

import "errors"

// ErrBad matches every *Error: a file that is not a checkpoint, is
// damaged, or is in a format this samsara does not read.
var ErrBad = errors.New("bad checkpoint")

// The kinds of *Error (errors.Is).
var (
	// ErrBadMagic: the file does not start with the checkpoint magic.
	ErrBadMagic = errors.New("not a samsara checkpoint")
	// ErrVersion: a format version this samsara does not read.
	ErrVersion = errors.New("unknown checkpoint format version")
	// ErrTruncated: the file ends before the header says it does.
	ErrTruncated = errors.New("truncated checkpoint")
	// ErrTooLarge: a length in the file is over its limit.
	ErrTooLarge = errors.New("checkpoint length over its limit")
	// ErrDigest: the contents do not match the stored digest.
	ErrDigest = errors.New("checkpoint digest mismatch (corrupted)")
	// ErrMalformed: any other inconsistency (flags, page runs, metadata).
	ErrMalformed = errors.New("malformed checkpoint")
)

// Error is a checkpoint that cannot be read: errors.Is(err, ErrBad), and
// errors.Is(err, Kind).
type Error struct {
	Path   string // the file, when known
	Kind   error  // ErrBadMagic, ErrVersion, ErrTruncated, ErrTooLarge, ErrDigest or ErrMalformed
	Detail string // what was wrong, for the user
}

func (e *Error) Error() string {
	s := e.Kind.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Path != "" {
		s = e.Path + ": " + s
	}
	return s
}

// Unwrap returns the kind.
func (e *Error) Unwrap() error { return e.Kind }

// Is reports whether target is ErrBad (the kind is matched by Unwrap).
func (e *Error) Is(target error) bool { return target == ErrBad }

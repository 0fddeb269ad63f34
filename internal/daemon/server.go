package daemon

// The HTTP API (api/openapi.yaml): JSON in and out, every error a JSON
// {"error": "..."} with a 4xx or 5xx status, request bodies size-limited
// and decoded strictly.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// maxBodyBytes bounds a request body. The largest legitimate body is a
// create request: four paths (PATH_MAX 4096 each), an argv of at most
// maxArgvBytes, a name and a few labels: well under 64 KiB.
const maxBodyBytes = 64 << 10

// consolePoll is how often a followed console stream looks for new output:
// as often as a person watching would notice, rarely enough to cost nothing.
const consolePoll = 200 * time.Millisecond

// route is one endpoint: a net/http pattern ("METHOD /path") and its
// handler. api/openapi.yaml documents each (TestOpenAPIMatchesRoutes).
type route struct {
	pattern string
	handler http.HandlerFunc
}

// routes are the API's endpoints.
func (d *Daemon) routes() []route {
	return []route{
		{"GET /v1/health", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, d.health()) }},
		{"GET /metrics", d.met.handler().ServeHTTP},
		{"POST /v1/recordings", d.handleCreate},
		{"GET /v1/recordings", d.handleList},
		{"GET /v1/recordings/{id}", func(w http.ResponseWriter, r *http.Request) {
			rec, err := d.get(r.PathValue("id"))
			reply(w, http.StatusOK, rec, err)
		}},
		{"DELETE /v1/recordings/{id}", func(w http.ResponseWriter, r *http.Request) {
			if err := d.remove(r.PathValue("id")); err != nil {
				writeError(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}},
		{"POST /v1/recordings/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
			if !emptyBody(w, r) {
				return
			}
			rec, err := d.stop(r.PathValue("id"))
			reply(w, http.StatusAccepted, rec, err)
		}},
		{"GET /v1/recordings/{id}/console", d.handleConsole},
		{"GET /v1/recordings/{id}/log", d.handleLog},
		{"POST /v1/recordings/{id}/replays", func(w http.ResponseWriter, r *http.Request) {
			if !emptyBody(w, r) {
				return
			}
			rp, err := d.replay(r.PathValue("id"))
			reply(w, http.StatusCreated, rp, err)
		}},
		{"GET /v1/recordings/{id}/replays/{rid}", func(w http.ResponseWriter, r *http.Request) {
			rp, err := d.getReplay(r.PathValue("id"), r.PathValue("rid"))
			reply(w, http.StatusOK, rp, err)
		}},
		{"GET /v1/recordings/{id}/replays/{rid}/console", d.handleConsole},
	}
}

// Handler returns the API.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range d.routes() {
		mux.HandleFunc(rt.pattern, rt.handler)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, Error{Error: fmt.Sprintf("no endpoint %s %s (the API is under /v1)", r.Method, r.URL.Path)})
	})
	return mux
}

func (d *Daemon) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req CreateRecording
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := d.validate(&req); err != nil {
		writeError(w, err)
		return
	}
	rec, err := d.create(req)
	reply(w, http.StatusCreated, rec, err)
}

func (d *Daemon) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	labels := map[string]string{}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			writeError(w, fmt.Errorf("%w: label filter %q: want key=value", errBadRequest, l))
			return
		}
		labels[k] = v
	}
	state := State(q.Get("state"))
	switch state {
	case "", StateQueued, StateBooting, StateRecording, StateFinished, StateStopped, StateFailed, StateInterrupted:
	default:
		writeError(w, fmt.Errorf("%w: state %q is not a recording state", errBadRequest, state))
		return
	}
	recs := d.list(state, labels)
	if recs == nil {
		recs = []*Recording{}
	}
	writeJSON(w, http.StatusOK, recs)
}

// handleConsole sends the console output of a recording or, with {rid},
// of one of its replays; with ?follow=true it keeps sending new output
// until the job ends or the client goes away.
func (d *Daemon) handleConsole(w http.ResponseWriter, r *http.Request) {
	id, rid := r.PathValue("id"), r.PathValue("rid")
	path, job := d.store.ConsolePath(id), id
	var err error
	if rid != "" {
		_, err = d.getReplay(id, rid)
		path, job = d.store.ReplayConsolePath(id, rid), rid
	} else {
		_, err = d.get(id)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	follow := r.URL.Query().Get("follow") == "true"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	var off int64
	for {
		running := d.jobRunning(job)
		// Read after checking running: output written before the job
		// ended is not missed.
		if f, err := os.Open(path); err == nil {
			f.Seek(off, io.SeekStart)
			n, _ := io.Copy(w, f)
			f.Close()
			off += n
			if n > 0 && fl != nil {
				fl.Flush()
			}
		}
		if !follow || !running {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(consolePoll):
		}
	}
}

// handleLog sends the log file (of a running recording: what is written
// so far).
func (d *Daemon) handleLog(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := d.get(id); err != nil {
		writeError(w, err)
		return
	}
	f, err := os.Open(d.store.LogPath(id))
	if err != nil {
		writeError(w, fmt.Errorf("%w: recording %s has no log yet", errConflict, id))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", id+".zst"))
	io.Copy(w, f)
}

// decodeBody decodes a JSON body strictly: size-limited, unknown fields
// and trailing data are errors.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: Content-Type %q: want application/json", errUnsupportedMedia, ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if tooLarge(err) {
			return fmt.Errorf("%w: the body is larger than %d bytes", errTooLarge, maxBodyBytes)
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: empty body: want a JSON object", errBadRequest)
		}
		return fmt.Errorf("%w: malformed JSON: %v", errBadRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if tooLarge(err) {
			return fmt.Errorf("%w: the body is larger than %d bytes", errTooLarge, maxBodyBytes)
		}
		return fmt.Errorf("%w: malformed JSON: data after the object", errBadRequest)
	}
	return nil
}

// tooLarge reports whether err is http.MaxBytesReader's.
func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// emptyBody refuses a body on endpoints that take none (anything but
// whitespace or {}).
func emptyBody(w http.ResponseWriter, r *http.Request) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, fmt.Errorf("%w: the body is larger than %d bytes", errTooLarge, maxBodyBytes))
		return false
	}
	if s := strings.TrimSpace(string(b)); s != "" && s != "{}" {
		writeError(w, fmt.Errorf("%w: this endpoint takes no body", errBadRequest))
		return false
	}
	return true
}

// errTooLarge maps to 413, errUnsupportedMedia to 415.
var (
	errTooLarge         = errors.New("request body too large")
	errUnsupportedMedia = errors.New("unsupported media type")
)

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, errNotFound):
		return http.StatusNotFound
	case errors.Is(err, errConflict):
		return http.StatusConflict
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errUnsupportedMedia):
		return http.StatusUnsupportedMediaType
	}
	return http.StatusInternalServerError
}

func reply(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, status, v)
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), Error{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Listen creates the Unix socket at path, mode 0600 (owned by gid when it
// is >= 0, and then 0660 so that group can connect). A stale socket left
// by a killed daemon is removed; a live one, or a file that is not a
// socket, is an error.
func Listen(path string, gid int) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: a daemon is already listening", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %s: exists and is not a socket", path)
		}
		os.Remove(path) // stale: no daemon answered
	}
	// Create the socket with no access for anyone but the owner from the
	// start (umask), rather than chmod after bind leaves a window.
	old := umask(0o177)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("socket --group: %w", err)
		}
		if err := os.Chmod(path, 0o660); err != nil {
			l.Close()
			return nil, fmt.Errorf("socket --group: %w", err)
		}
	}
	return l, nil
}

package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
)

// maxResponseBytes bounds a response body: a full sync page of the largest
// events fits comfortably.
const maxResponseBytes = 32 << 20

// failoverError marks an attempt that failed because the site is unusable
// (as opposed to a final answer from a working site).
type failoverError struct {
	err    error
	status int // the HTTP status the site answered with, if it answered
}

func (e *failoverError) Error() string { return e.err.Error() }
func (e *failoverError) Unwrap() error { return e.err }

// call makes one API request, failing over between sites until a site gives
// a final answer or ctx ends. in (if not nil) is sent as JSON; a successful
// body is decoded into out (if not nil). retried reports whether an attempt
// that failed over may have taken effect unseen (it reached its site: not
// a refused connection). A 500 moves the request to the next site (that
// site failed), but once every site in turn has answered 500 the request
// itself is what fails them, and the error is final. When ctx ends first,
// the error wraps both ctx's and the last site's (ErrorCode gives the
// latter's code).
func (c *Client) call(ctx context.Context, method, path string, in, out any) (retried bool, err error) {
	var body []byte
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return false, fmt.Errorf("client: encoding %s %s: %w", method, path, err)
		}
	}
	n := len(c.sites)
	start := c.startSite()
	var last error
	failed := 0 // sites in a row that answered 500
	for try := 0; ; try++ {
		if try > 0 && try%n == 0 {
			if err := sleep(ctx, c.backoff(try/n)); err != nil {
				return retried, fmt.Errorf("client: %s %s: no site answered (last failure: %w): %w", method, path, last, err)
			}
		}
		i := (start + try) % n
		tok := c.Token()
		err := c.attempt(ctx, i, tok, method, path, body, out)
		var fe *failoverError
		switch {
		case err == nil:
			c.siteOK(i)
			return retried, nil
		case salamander.ErrorCode(err) == salamander.CodeUnauthorized && c.tokenReplaced(ctx, tok):
			// Asked with a session the client has replaced since (a
			// password change ended it): ask again, here, with the new.
			c.siteOK(i)
			try--
			continue
		case !errors.As(err, &fe):
			// A final answer, also one that came as ctx ended.
			c.siteOK(i) // it answered: it is usable
			return retried, err
		case ctx.Err() != nil:
			if last == nil {
				last = err
			}
			return retried, fmt.Errorf("client: %s %s: no site answered (last failure: %w): %w", method, path, last, ctx.Err())
		}
		retried = retried || mayHaveReached(err)
		if fe.status == http.StatusInternalServerError {
			failed++
		} else {
			failed = 0
		}
		if failed >= n {
			return retried, fe.err
		}
		c.siteBad(i, fmt.Errorf("%s %s: %w", method, path, err))
		last = fmt.Errorf("%s: %w", c.sites[i], err)
	}
}

// mayHaveReached reports whether a failed attempt may have reached its
// site, and so taken effect unseen: anything but a connection never made
// (refused, no route, a name that does not resolve).
func mayHaveReached(err error) bool {
	var op *net.OpError
	return !errors.As(err, &op) || op.Op != "dial"
}

// attempt makes one request to site i. It returns a *failoverError when the
// site is unusable, a *salamander.Error for a final API error, and nil when
// out holds the decoded answer.
func (c *Client) attempt(ctx context.Context, i int, tok, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.sites[i]+path, rd)
	if err != nil {
		return fmt.Errorf("client: building %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return &failoverError{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return &failoverError{err: fmt.Errorf("reading response: %w", err)}
	}
	if failoverStatus(resp.StatusCode) {
		return &failoverError{err: decodeError(resp.StatusCode, resp.Header, data), status: resp.StatusCode}
	}
	if resp.StatusCode >= 300 {
		return decodeError(resp.StatusCode, resp.Header, data)
	}
	if len(data) > maxResponseBytes {
		return fmt.Errorf("client: %s %s: response over %d bytes", method, path, maxResponseBytes)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("client: decoding %s %s response: %w", method, path, err)
		}
	}
	return nil
}

// failoverStatus reports whether an HTTP status means "this site cannot
// serve you now; another may".
//
// 500 counts too: it means this site failed (its disk, its read model),
// and every call the SDK makes is safe to repeat elsewhere — sends and
// room creation carry client ids, everything else is naturally idempotent.
func failoverStatus(status int) bool {
	switch status {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// decodeError turns an error response into a *salamander.Error. A body that
// is not the API's JSON error (e.g. from a proxy) still yields a coded error,
// with the code the status implies; a Retry-After header gives RetryAfter
// when the body does not.
func decodeError(status int, h http.Header, body []byte) *salamander.Error {
	e := decodeErrorBody(status, body)
	if e.RetryAfter <= 0 {
		e.RetryAfter = int(retryAfter(h) / time.Second)
	}
	e.RetryAfter = min(e.RetryAfter, int(maxRetryAfter/time.Second))
	return e
}

func decodeErrorBody(status int, body []byte) *salamander.Error {
	var e salamander.Error
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		if e.Message == "" {
			e.Message = http.StatusText(status)
		}
		return &e
	}
	e = salamander.Error{}
	e.Code = codeForStatus(status)
	e.Message = strings.TrimSpace(string(body))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200]
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("HTTP status %d", status)
	}
	return &e
}

// codeForStatus is the registered code whose status is status, or a generic
// one: invalid_request for other 4xx, internal for anything else.
func codeForStatus(status int) salamander.Code {
	for _, code := range salamander.Codes() {
		if code.HTTPStatus() == status {
			return code
		}
	}
	if status >= 400 && status < 500 {
		return salamander.CodeInvalid
	}
	return salamander.CodeInternal
}

// backoff returns the pause before round n (n ≥ 1) through all sites: full
// jitter, uniform in [0, min(maxBackoff, minBackoff·2ⁿ⁻¹)).
func (c *Client) backoff(n int) time.Duration {
	ceil := c.maxBackoff
	if n < 1 {
		n = 1
	}
	if n-1 < 40 {
		if b := c.minBackoff << (n - 1); b > 0 && b < ceil {
			ceil = b
		}
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(c.int64N(int64(ceil)))
}

func (c *Client) int64N(n int64) int64 {
	if c.rand == nil {
		return rand.Int64N(n)
	}
	c.randMu.Lock()
	defer c.randMu.Unlock()
	return c.rand.Int64N(n)
}

// sleep waits for d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

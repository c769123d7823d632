package ike

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of them
// (test with errors.Is).
var (
	// ErrTruncated: a message or payload is shorter than its headers or
	// than its length field says.
	ErrTruncated = errors.New("ike: truncated")
	// ErrBadLength: a length field is inconsistent (too small, past the
	// end of the enclosing structure, or disagreeing with the data).
	ErrBadLength = errors.New("ike: bad length")
	// ErrVersion: the major version is not 2.
	ErrVersion = errors.New("ike: unsupported major version")
	// ErrCritical: an unknown payload has the critical bit set
	// (UNSUPPORTED_CRITICAL_PAYLOAD).
	ErrCritical = errors.New("ike: unsupported critical payload")
	// ErrMalformed: a field holds a value that is not allowed (reserved
	// values, an SK payload that is not last, bad proposal numbering...).
	ErrMalformed = errors.New("ike: malformed message")
	// ErrIntegrity: the SK payload did not authenticate or decrypt.
	ErrIntegrity = errors.New("ike: integrity check failed")
	// ErrUnsupported: an algorithm or feature this package does not
	// implement.
	ErrUnsupported = errors.New("ike: unsupported")
	// ErrInvalidKE: a key exchange public value is invalid for its group.
	ErrInvalidKE = errors.New("ike: invalid key exchange value")
	// ErrNoProposalChosen: no proposal was acceptable (ours, or the
	// peer's NO_PROPOSAL_CHOSEN).
	ErrNoProposalChosen = errors.New("ike: no proposal chosen")
	// ErrAuthenticationFailed: the peer's AUTH did not verify, or the
	// peer sent AUTHENTICATION_FAILED.
	ErrAuthenticationFailed = errors.New("ike: authentication failed")
	// ErrTSUnacceptable: the traffic selectors do not intersect
	// (TS_UNACCEPTABLE).
	ErrTSUnacceptable = errors.New("ike: traffic selectors unacceptable")
	// ErrTimeout: the peer did not answer within the retransmission
	// schedule.
	ErrTimeout = errors.New("ike: peer did not answer")
	// ErrPeerError: the peer answered with another error notification.
	ErrPeerError = errors.New("ike: peer sent an error notification")
	// ErrClosed: the Endpoint or IKE SA was closed.
	ErrClosed = errors.New("ike: closed")
	// ErrRekeyed: the IKE SA was replaced by its successor in an IKE SA
	// rekey (Config.OnIKEDown); its children moved to the successor.
	ErrRekeyed = errors.New("ike: IKE SA rekeyed")
	// ErrConfig: an invalid configuration.
	ErrConfig = errors.New("ike: invalid configuration")
)

func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

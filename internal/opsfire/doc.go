// Package opsfire holds the ops plane's survivor test: on a cluster of
// three real `salamander serve` processes with one site SIGKILLed, every
// ops-plane function — console data, admin actions, incidents on the status
// page and in clients, damage reports, drill records, the audit trail —
// works from each surviving site, and every ops endpoint refuses callers
// without the role it needs. It has no code besides its tests.
package opsfire

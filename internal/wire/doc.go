// Package wire is Clover's message format between servers and clients, which exchange frames over
// ZeroMQ PUSH/PULL sockets: the leader sends Dispatch to a client; a client sends Ack, Result and
// Heartbeat to any server; a server sends Receipt to a client once results are durably recorded. A
// follower passes a client's Ack or Result on to the leader with Relay, which sets Header.Via and keeps
// everything else, so the leader knows it was recorded already and no server relays it twice.
//
// A frame is
//
//	"CLV" | version (1 byte, 1) | kind (1 byte) | snappy block (snappy.Encode, not the stream format) of the JSON message
//
// at most MaxFrame bytes, whose JSON is at most MaxDecoded bytes. Within a version, fields may be added:
// Decode ignores JSON fields it does not know. An unknown version or kind is an error, so a new message
// or an incompatible change needs a new kind or version.
//
// Decode is written for hostile input: it never panics, checks the frame and the snappy block's declared
// length before allocating for it, and checks each kind's required fields (listed on each message type).
// Errors are *DecodeError wrapping one of the Err sentinels, for errors.Is; its Reason method gives a
// short label for metrics. Encode checks the same fields and limits, so what it writes Decode reads.
package wire

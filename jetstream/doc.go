// Package jetstream forwards the messages of a bigqueue consumer into a
// NATS JetStream stream, exactly once within the stream's duplicate
// window and in the queue's order.
//
//	q, _ := bigqueue.NewQueue(dir)
//	c, _ := q.NewConsumer("jetstream")
//	nc, _ := nats.Connect(url, nats.MaxReconnects(-1))
//	js, _ := jetstream.New(nc) // github.com/nats-io/nats.go/jetstream
//	f, _ := bqjs.New(q, c, js, "events.host1", bqjs.Config{})
//	err := f.Run(ctx) // until ctx is done; returns ctx.Err() after a clean stop
//
// Producers enqueue into the local queue and never wait for the network;
// the forwarder drains it while the server is reachable and lets it
// absorb the backlog while it is not.
//
// # How a message travels
//
// The forwarder reads ahead of its commits through a cursor, a helper
// consumer named after the consumer plus CursorSuffix, and publishes each
// message asynchronously with nats.go's PublishMsgAsync, at most
// Config.Window of them awaiting their acknowledgement. Every message
// carries the header Nats-Msg-Id, set to MsgID(seq, msg): the queue's ID
// (bigqueue.Stats.QueueID, 16 hex digits), a dash, the message's
// sequence number, a dash, and the CRC-32C of its bytes. When the stream acknowledges the oldest message in
// flight (and any later ones already in), the forwarder commits them by
// moving the consumer past them (Consumer.Seek): strictly in order, and
// only after the stream stored them. A crash between the two re-sends
// the messages that were stored and not committed; the stream recognises
// their IDs and drops them (the acknowledgement says "duplicate").
//
// On any failure (a publish error, an error or no answer within
// Config.AckTimeout for the oldest message, a disconnect) the forwarder
// abandons the window, moves the cursor back to the first unacknowledged
// message, waits a backoff (doubling from Config.MinBackoff up to
// Config.MaxBackoff, drawn at random in [d/2, d]), and sends from there.
//
// # Order
//
// A failure in the middle of a window does not mean that the later
// messages of the window failed too: the server may have stored them (an
// earlier message lost on a broken connection while nats.go's reconnect
// buffer delivers later ones; a leader change in a cluster; a retry of
// one message). Re-sending the missing one after them would put the
// stream out of order. So every message but the first after a (re)start
// or failure also carries Nats-Expected-Last-Msg-Id, the ID of the
// message published before it: the server stores a message only right
// after its predecessor and refuses it otherwise. The first message after
// a reset carries no expectation; every message before it has been
// acknowledged, so it cannot overtake one. The stream's order is the
// queue's, whatever fails and whenever.
//
// The expectation names the stream's last message. A stream that
// receives messages from other publishers as well stays correct, but
// every foreign message in the middle of a window makes the server refuse
// the next one of ours, and the forwarder re-sends from there (at once,
// without a backoff): throughput suffers with the interleaving. Give each
// forwarder a stream of its own (one per producing machine), and gather
// them, if one stream is wanted, with a stream that sources them.
//
// # Exactly once, and its limit
//
// Each message of the queue is in the stream once as long as a re-send
// comes within the stream's duplicate window (StreamConfig.Duplicates,
// two minutes by default) of the first time it was stored: the window is
// how long the server remembers an ID. A forwarder that crashes after the
// stream stored a message and before the commit, and starts again after
// the window has passed, stores that message (and any others stored and
// not committed, at most Config.Window) a second time. A stream with a
// short duplicate window narrows this; one with none (Duplicates below
// the server's minimum) gives at-least-once only. Messages the local
// queue lost (retention, ErrDropped; damage, ErrCorrupt) cannot be
// forwarded; Stats.Skipped counts the notices.
//
// A power loss (not a process crash) on the producing machine loses the
// messages no Flush covered, as bigqueue's durability contract says, and
// their sequence numbers go to the next messages enqueued. If the lost
// ones had reached the stream, the new ones with the same numbers still
// get IDs of their own, since the ID carries the message's checksum: the
// stream keeps both (the lost message was forwarded; it is only gone
// from the local queue). Only a new message with exactly the bytes of the
// lost one at the same number, within the window, is taken for it: it is
// the same message, as far as anyone can tell.
//
// The message ID names the message, not the route: it leaves out the
// consumer's name. Two forwarders of different consumers of one queue
// into one stream then store each message once, which is what a stream
// that mirrors the queue wants; to get the messages twice, send them to
// two streams.
//
// # Stopping
//
// Run returns ctx.Err() once ctx is done, after waiting up to
// AckTimeout for the acknowledgements in flight and committing every
// message acknowledged before the first missing one: nothing the stream
// acknowledged before Run returned is left uncommitted. Errors of the
// local queue (closed, consumer deleted, I/O) end Run, wrapping ErrQueue
// and the queue's error; those of the network and the server never do.
//
// Drain is Run for a program that holds the queue only for a while: it
// forwards what the consumer has to read and returns nil once all of it
// is committed, or returns the first failure without retrying (the
// caller chooses when to try again). The bigqueue command's forward
// works that way, so that producers in other processes get their turns
// with the queue.
//
// # Observability
//
// Stats returns Forwarded (acknowledged and committed), Duplicates (of
// those, re-sends the stream had already), Pending (the local backlog:
// the consumer's Len), InFlight, Retries (failures after which the
// forwarder went back), Skipped (messages the local queue lost), NextSeq
// (the next message to forward) and LastError with its time.
//
// # Why the new JetStream API
//
// The forwarder takes a jetstream.JetStream of
// github.com/nats-io/nats.go/jetstream rather than the legacy
// nats.JetStreamContext: PublishMsgAsync returns a future per message
// with its own Ok and Err channels, which is what a forwarder that
// commits strictly in order needs; the forwarder bounds its window
// itself, whatever the JetStream's WithPublishAsyncMaxPending, so a
// JetStream shared with other publishers works as well. It publishes
// with WithRetryAttempts(0): nats.go's own retry of a message that
// found no responders would send it again later, behind newer ones.
//
// # Connections
//
// The forwarder does not own the connection. Connect with
// nats.MaxReconnects(-1) so that nats.go never gives up, and preferably
// nats.ReconnectBufSize(-1): publishes during a disconnect then fail at
// once and the forwarder backs off, instead of filling nats.go's
// reconnect buffer with messages that will be refused or deduplicated
// after the reconnect (harmless, but wasted). Beware of
// nats.RetryOnFailedConnect: in the bigqueue command's tests, a
// connection it made before the server was up went on refusing messages
// with headers (ErrHeadersNotSupported) after it had connected, and
// every message the forwarder sends has headers. We did not find why (a
// small test of the same option works); the command connects in a
// backoff loop of its own instead.
package jetstream

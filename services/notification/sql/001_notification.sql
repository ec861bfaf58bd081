-- The notification worker's shared tables (issue 14): what the batch path
-- writes and the sender reads. Contacts are personal data: kept here only,
-- read by the sender at send time (so an erasure takes effect on deliveries
-- not sent yet), never copied into a log, a metric label or a dead letter.
-- Migrations 002-049 belong to the orchestration side (templates, cases,
-- surveys), 050-099 to the sender.

CREATE TABLE contacts (
  buyer_id         text PRIMARY KEY,
  locale           text NOT NULL DEFAULT '',
  time_zone        text NOT NULL DEFAULT '',          -- IANA name; '' = the default zone
  phone            text NOT NULL DEFAULT '',
  email            text NOT NULL DEFAULT '',
  push_token       text NOT NULL DEFAULT '',
  channels         text[] NOT NULL DEFAULT '{}',      -- allowed, in the buyer's order of preference
  quiet_start_min  int NOT NULL DEFAULT 0 CHECK (quiet_start_min BETWEEN 0 AND 1439),
  quiet_end_min    int NOT NULL DEFAULT 0 CHECK (quiet_end_min BETWEEN 0 AND 1439),
  marketing_opt_in boolean NOT NULL DEFAULT false,
  updated_at_us    bigint NOT NULL
);

-- Buyers who asked to be forgotten: a contact event older than the erasure
-- (a late redelivery) must not bring the data back.
CREATE TABLE erasures (
  buyer_id     text PRIMARY KEY,
  erased_at_us bigint NOT NULL
);

-- One row per (notification, channel): the message as rendered for that
-- channel (the audit of what the buyer was told, with its template
-- version) and its delivery. delivery_id is the idempotency key the
-- gateway sees, the same across retries and restarts:
--   uuid5("aftersales.notification_delivery", "<notification_id>|<channel>")
-- and notification_id, for a told event,
--   uuid5("aftersales.notification", "<source_event_id>|<template_id>")
-- (a NotificationRequested names its own). rank 0 is the channel tried
-- first ('pending'); the others wait as 'standby' and the next one is made
-- 'pending' when the one before fails for good; one sent cancels the rest.
-- 'sending': taken by a sender until due_at (its lease); a sender that
-- died mid-send leaves it to be taken again with the same key.
CREATE TABLE deliveries (
  delivery_id      uuid PRIMARY KEY,
  notification_id  uuid NOT NULL,
  rank             int NOT NULL DEFAULT 0 CHECK (rank >= 0),
  case_id          text NOT NULL DEFAULT '',
  buyer_id         text NOT NULL,
  channel          text NOT NULL CHECK (channel IN ('sms', 'email', 'push', 'in_app')),
  template_id      text NOT NULL,
  template_version text NOT NULL,
  locale           text NOT NULL,
  subject          text NOT NULL DEFAULT '',          -- e-mail subject, push title
  body             text NOT NULL,                     -- rendered and escaped for the channel
  urgent           boolean NOT NULL DEFAULT false,
  case_seq         bigint NOT NULL DEFAULT 0,         -- a case's events are told in this order
  status           text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('standby', 'pending', 'sending', 'sent', 'failed', 'cancelled')),
  attempts         int NOT NULL DEFAULT 0,
  due_at           timestamptz NOT NULL DEFAULT now(), -- not before: quiet hours, backoff, lease
  source_event_id  text NOT NULL DEFAULT '',
  source_at_us     bigint NOT NULL DEFAULT 0,          -- the told event's time
  submitted_at_us  bigint NOT NULL DEFAULT 0,          -- a first response: the request's submission
  sla_breached     boolean NOT NULL DEFAULT false,
  last_error       text NOT NULL DEFAULT '',
  created_at       timestamptz NOT NULL DEFAULT now(),
  sent_at          timestamptz,
  UNIQUE (notification_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status IN ('pending', 'sending');
CREATE INDEX deliveries_case ON deliveries (case_id, case_seq) WHERE status IN ('pending', 'sending', 'standby');
CREATE INDEX deliveries_notification ON deliveries (notification_id, rank);
CREATE INDEX deliveries_buyer ON deliveries (buyer_id, created_at);

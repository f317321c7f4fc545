/**
 * LZ4 compression for tables of many small, similar records (the broker's replica: a finished job's record
 * is about 960 bytes of msgpack, most of it field names and the ids it repeats). LZ4 alone gains little on
 * one small record; against a dictionary of typical records it finds the field names and common values
 * there, and a record takes about a third of its pages (measured: 3,000 finished trivial jobs, 1,005 ->
 * 337 pages of `meta_jobs`, 153 -> 84 of `meta_names`).
 *
 * The dictionary is part of the stored format: a value compressed against it can only be read with the
 * same bytes. Never change them; a better dictionary needs a new schema version and a migration that
 * rewrites the tables. They are lmdb-js's own encoding of five representative changes (an executor's
 * registration, a job lost, running and finished with an accepted result, a result archive's location),
 * padded to a multiple of 8 bytes, which lmdb-js needs to place it before its decompression buffer.
 *
 * Values written before compression was turned on are read as they are: lmdb-js takes a value for a
 * compressed one only when its first byte is 250 or more, and msgpack maps, records and strings never
 * start so. A build older than SCHEMA_VERSION 2 refuses the directory instead of misreading it.
 */
export const COMPRESSION_DICTIONARY: Buffer = Buffer.from(
  '1HJAl6V0YWJsZaNrZXmmb3JpZ2luo3NlcaJ2Y6NobGOkcGVlcqVub2Rlc7Nicm9rZXItMS9leGVjdXRvci0xqGJyb2tlci0xAdRy' +
  'QZGoYnJva2VyLTEDkstCeXdCDcAQAAHUckKVp25vZGVfaWSkcm9sZaVhbGl2ZaxjYXBhYmlsaXRpZXOpam9iX3Nsb3RzqmV4ZWN1' +
  'dG9yLTGoZXhlY3V0b3LD1HJDlqljcHVfY29yZXOxZnJlZV9jcHVfY2FwYWNpdHmrZnJlZV9tZW1vcnmvZnJlZV9kaXNrX3NwYWNl' +
  'pHRhZ3Oub25fbWFpbnNfcG93ZXIEAM47msoAy0ICoF8gAAAAkMMC1HJAl6V0YWJsZaNrZXmmb3JpZ2luo3NlcaJ2Y6NobGOjam9i' +
  'pGpvYnOoam9iLTAwMDGoYnJva2VyLTEE1HJBkahicm9rZXItMQySy0J5d0INwEAAAdRyQpymam9iX2lkpXN0YXRlqHByaW9yaXR5' +
  'pW93bmVypmJyb2tlcqpjcmVhdGVkX2F0qnVwZGF0ZWRfYXSoYXR0ZW1wdHOkc3BlY6ZkaWdlc3SlYWZ0ZXKmcmVhc29uqGpvYi0w' +
  'MDAxpmZhaWxlZKZub3JtYWyoY2xpZW50LTGoYnJva2VyLTHLQnl3Qg3AAADLQnl3Qg3AUACR1HJDl6dhdHRlbXB0qGV4ZWN1dG9y' +
  'p291dGNvbWWrYXNzaWduZWRfYXSoZW5kZWRfYXSmcmVhc29ur2tpbGxlZF9leGVjdXRvcgGqZXhlY3V0b3ItMaRsb3N0y0J5d0IN' +
  'wCAAy0J5d0INwIAAumV4ZWN1dG9yLTEgd2FzIGxvc3QgKHdpbGwpw9RyRJ2mam9iX2lkq3dhc21fbW9kdWxlrGNhcGFiaWxpdGll' +
  'c6Rhcmd2o2VudqRkaXJzpGRhdGGrc3Rkb3V0X2ZpbGWncmVzdWx0c61uYW1lZF9yZXN1bHRzqHByaW9yaXR5qXRpbWVvdXRfc61t' +
  'YXhfbWVtb3J5X21iqGpvYi0wMDAxsG1vZHVsZXMvam9iLndhc23UckWQkahqb2Iud2FzbUWQ1HJGkaZpbi5jc3arZGF0YS9pbi5j' +
  'c3aqc3Rkb3V0LnR4dJGnb3V0LnR4dNRyR5Gnb3V0LnR4dLBqb2ItMDAwMS9vdXQudHh0pm5vcm1hbDzMQNlAZjBlMWQyYzNiNGE1' +
  'OTY4Nzc4Njk1YTRiM2MyZDFlMGZmMGUxZDJjM2I0YTU5Njg3Nzg2OTVhNGIzYzJkMWUwZpDZIGF0dGVtcHQgMSBvbiBleGVjdXRv' +
  'ci0xIHdhcyBsb3N01HJAl6V0YWJsZaNrZXmmb3JpZ2luo3NlcaJ2Y6NobGOjam9ipGpvYnOoam9iLTAwMDGoYnJva2VyLTEF1HJB' +
  'kahicm9rZXItMQ+Sy0J5d0INwFAAAdRyQpumam9iX2lkpXN0YXRlqHByaW9yaXR5pW93bmVypmJyb2tlcqpjcmVhdGVkX2F0qnVw' +
  'ZGF0ZWRfYXSoYXR0ZW1wdHOkc3BlY6ZkaWdlc3SlYWZ0ZXKoam9iLTAwMDGncnVubmluZ6Zub3JtYWyoY2xpZW50LTGoYnJva2Vy' +
  'LTHLQnl3Qg3AAADLQnl3Qg3AUACR1HJDladhdHRlbXB0qGV4ZWN1dG9yp291dGNvbWWrYXNzaWduZWRfYXSqc3RhcnRlZF9hdAGq' +
  'ZXhlY3V0b3ItMadydW5uaW5ny0J5d0INwCAAy0J5d0INwFAA1HJEnaZqb2JfaWSrd2FzbV9tb2R1bGWsY2FwYWJpbGl0aWVzpGFy' +
  'Z3ajZW52pGRpcnOkZGF0YatzdGRvdXRfZmlsZadyZXN1bHRzrW5hbWVkX3Jlc3VsdHOocHJpb3JpdHmpdGltZW91dF9zrW1heF9t' +
  'ZW1vcnlfbWKoam9iLTAwMDGwbW9kdWxlcy9qb2Iud2FzbdRyRZCRqGpvYi53YXNtRZDUckaRpmluLmNzdqtkYXRhL2luLmNzdqpz' +
  'dGRvdXQudHh0kadvdXQudHh01HJHkadvdXQudHh0sGpvYi0wMDAxL291dC50eHSmbm9ybWFsPMxA2UBmMGUxZDJjM2I0YTU5Njg3' +
  'Nzg2OTVhNGIzYzJkMWUwZmYwZTFkMmMzYjRhNTk2ODc3ODY5NWE0YjNjMmQxZTBmkNRyQJeldGFibGWja2V5pm9yaWdpbqNzZXGi' +
  'dmOjaGxjqGxvY2F0aW9upW5hbWVzs2pvYi0wMDAxL3Jlc3VsdC56aXCoYnJva2VyLTEG1HJBkahicm9rZXItMRKSy0J5d0INwGAA' +
  'AdRyQpSlc3RvcmWkc2l6ZaJhdKVvd25lcqtkYXRhc3RvcmUtMRaSy0J5d0INwIAAA6hjbGllbnQtMdRyQJeldGFibGWja2V5pm9y' +
  'aWdpbqNzZXGidmOjaGxjo2pvYqRqb2JzqGpvYi0wMDAxqGJyb2tlci0xB9RyQZGoYnJva2VyLTEVkstCeXdCDcBwAAHUckKcpmpv' +
  'Yl9pZKVzdGF0Zahwcmlvcml0eaVvd25lcqZicm9rZXKqY3JlYXRlZF9hdKp1cGRhdGVkX2F0qGF0dGVtcHRzpHNwZWOmZGlnZXN0' +
  'pWFmdGVypnJlc3VsdKhqb2ItMDAwMalzdWNjZWVkZWSmbm9ybWFsqGNsaWVudC0xqGJyb2tlci0xy0J5d0INwAAAy0J5d0INwJAA' +
  'kdRyQ5anYXR0ZW1wdKhleGVjdXRvcqdvdXRjb21lq2Fzc2lnbmVkX2F0qnN0YXJ0ZWRfYXSoZW5kZWRfYXQBqmV4ZWN1dG9yLTGo' +
  'YWNjZXB0ZWTLQnl3Qg3AIADLQnl3Qg3AUADLQnl3Qg3AgADUckSdpmpvYl9pZKt3YXNtX21vZHVsZaxjYXBhYmlsaXRpZXOkYXJn' +
  'dqNlbnakZGlyc6RkYXRhq3N0ZG91dF9maWxlp3Jlc3VsdHOtbmFtZWRfcmVzdWx0c6hwcmlvcml0eal0aW1lb3V0X3OtbWF4X21l' +
  'bW9yeV9tYqhqb2ItMDAwMbBtb2R1bGVzL2pvYi53YXNt1HJFkJGoam9iLndhc21FkNRyRpGmaW4uY3N2q2RhdGEvaW4uY3N2qnN0' +
  'ZG91dC50eHSRp291dC50eHTUckeRp291dC50eHSwam9iLTAwMDEvb3V0LnR4dKZub3JtYWw8zEDZQGYwZTFkMmMzYjRhNTk2ODc3' +
  'ODY5NWE0YjNjMmQxZTBmZjBlMWQyYzNiNGE1OTY4Nzc4Njk1YTRiM2MyZDFlMGaQ1HJI3AAQp2F0dGVtcHSoZXhlY3V0b3Knb3V0' +
  'Y29tZalleGl0X2NvZGWnbWVzc2FnZatkdXJhdGlvbl9tc6dhcmNoaXZlrWFyY2hpdmVfYnl0ZXOlZmlsZXOnbWlzc2luZ61uYW1l' +
  'ZF9yZXN1bHRzqmRlY2lkZWRfYnmqZGVjaWRlZF9hdKpkZWNpZGVkX3ZjqXB1Ymxpc2hlZKZkaWdlc3QBqmV4ZWN1dG9yLTGmZXhp' +
  'dGVkALJleGl0ZWQgd2l0aCBjb2RlIDADs2pvYi0wMDAxL3Jlc3VsdC56aXAWkJCQqGJyb2tlci0xkstCeXdCDcCQAAJBHtRySZGz' +
  'am9iLTAwMDEvcmVzdWx0LnppcNRySpOlc3RvcmWkc2l6ZaJhdKtkYXRhc3RvcmUtMRaSy0J5d0INwIAAA9lAZjBlMWQyYzNiNGE1' +
  'OTY4Nzc4Njk1YTRiM2MyZDFlMGZmMGUxZDJjM2I0YTU5Njg3Nzg2OTVhNGIzYzJkMWUwZgAAAAAA',
  'base64',
);

/** Values smaller than this are stored as they are: a few bytes of header would eat what LZ4 saves. */
export const COMPRESSION_THRESHOLD = 64;

#!/usr/bin/env node
// The KafkaJS side of Rill's client matrix (broker/tests/client_node.rs). Reads commands
// from stdin, one per line, arguments separated by tabs, and answers each with its output
// lines and "@@exit CODE" ("@@pause LABEL" waits for one stdin line). The commands and their
// output lines are those of the Java program (tests/clients/java/.../Scenarios.java and
// Admins.java), so the Rust checks are shared. Exit code 3: KafkaJS has no API for it.
//
// KafkaJS ships gzip only; snappy comes from kafkajs-snappy, LZ4 (frame format) from lz4js
// and zstd from @bokuweb/zstd-wasm, registered the way KafkaJS's docs show for codecs.
// Set RILL_CLIENT_LOG=debug for KafkaJS's debug log on stderr.
'use strict'

const readline = require('readline')
const {
  Kafka,
  logLevel,
  CompressionTypes,
  CompressionCodecs,
  ConfigResourceTypes,
  AssignerProtocol,
} = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')
const zstd = require('@bokuweb/zstd-wasm')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress(encoder) {
    return Buffer.from(lz4.compress(encoder.buffer))
  },
  async decompress(buffer) {
    return Buffer.from(lz4.decompress(buffer))
  },
})
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress(encoder) {
    await zstd.init()
    return Buffer.from(zstd.compress(encoder.buffer, 3))
  },
  async decompress(buffer) {
    await zstd.init()
    return Buffer.from(zstd.decompress(buffer))
  },
})

const WAIT_MS = 60000
const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

class Unsupported extends Error {}

const out = line => process.stdout.write(line + '\n')
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

const lines = readline.createInterface({ input: process.stdin, terminal: false })
const queue = []
let waiter = null
lines.on('line', l => {
  if (waiter) {
    const w = waiter
    waiter = null
    w(l)
  } else {
    queue.push(l)
  }
})
lines.on('close', () => {
  if (waiter) waiter(null)
  else queue.push(null)
})
const nextLine = () =>
  queue.length ? Promise.resolve(queue.shift()) : new Promise(resolve => (waiter = resolve))

async function pause(label) {
  out(`@@pause ${label}`)
  if ((await nextLine()) === null) throw new Error(`stdin closed during pause ${label}`)
}

function kafka(bootstrap, clientId = 'rill-kafkajs') {
  const level = process.env.RILL_CLIENT_LOG === 'debug' ? logLevel.DEBUG : logLevel.WARN
  return new Kafka({
    clientId,
    brokers: [bootstrap],
    logLevel: level,
    logCreator: () => ({ namespace, level, label, log }) => {
      const { message, ...extra } = log
      process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
    },
    requestTimeout: 20000,
    retry: { retries: 5 },
  })
}

const value = (label, i) => `${label}-v-${i};`.repeat(4)

// produce BOOTSTRAP TOPIC CODEC PARTITION COUNT LABEL: idempotent, acks=all.
async function produce(a) {
  const [bootstrap, topic, codec, partition, count, label] = a
  const producer = kafka(bootstrap).producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  try {
    const messages = []
    for (let i = 0; i < Number(count); i++) {
      messages.push({
        partition: Number(partition),
        key: `${label}-k-${i}`,
        value: value(label, i),
        headers: { seq: String(i), client: 'node' },
      })
    }
    const res = await producer.send({
      topic,
      acks: -1,
      compression: CODECS[codec],
      messages,
    })
    // One batch: the broker answers its base offset.
    const base = Number(res[0].baseOffset)
    out(`produced ${partition} ${base} ${base + messages.length - 1}`)
  } finally {
    await producer.disconnect()
  }
}

function recLine(partition, m) {
  const hs = Object.entries(m.headers || {}).map(([k, v]) => `${k}=${v}`)
  const key = m.key === null ? '-' : m.key.toString()
  const v = m.value === null ? '-' : m.value.toString()
  return `rec ${partition} ${m.offset} ${key} ${v} ${hs.length ? hs.join(';') : '-'}`
}

async function waitFor(what, cond, members = []) {
  const deadline = Date.now() + WAIT_MS
  while (!cond()) {
    for (const m of members) if (m.error) throw new Error(`${m.name}: ${m.error}`)
    if (Date.now() > deadline) {
      const state = members.map(m => `${m.name}=${[...m.assigned].sort()}`).join(' ')
      throw new Error(`${what}: not within ${WAIT_MS} ms (${state})`)
    }
    await sleep(50)
  }
}

// consume BOOTSTRAP TOPIC PARTITIONS COUNT: KafkaJS cannot assign partitions without a group,
// so this subscribes from the beginning in a group of its own.
async function consume(a) {
  const [bootstrap, topic, partitions, count] = a
  const k = kafka(bootstrap)
  const consumer = k.consumer({ groupId: `kafkajs-consume-${Date.now()}`, maxWaitTimeInMs: 200 })
  let got = 0
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        out(recLine(partition, message))
        got++
      },
    })
    await waitFor(`consume ${count} records`, () => got >= Number(count))
    await sleep(1000)
  } finally {
    await consumer.disconnect()
  }
  const admin = k.admin()
  await admin.connect()
  try {
    const offs = await admin.fetchTopicOffsets(topic)
    for (const o of offs.sort((x, y) => x.partition - y.partition)) out(`end ${o.partition} ${o.high}`)
  } finally {
    await admin.disconnect()
  }
  out(`consumed ${got}`)
}

class Ledger {
  constructor() {
    this.got = new Map()
    this.dups = []
  }
  add(who, partition, m) {
    const pos = `${partition}/${m.offset}`
    if (this.got.has(pos)) this.dups.push(`${pos} read by ${this.got.get(pos)} and ${who}`)
    else this.got.set(pos, `${who} ${m.key} ${m.value}`)
  }
  check(what, want) {
    if (this.dups.length) throw new Error(`${what}: consumed twice: ${this.dups}`)
    for (const [pos, kv] of want) {
      const got = this.got.get(pos)
      if (!got || !got.endsWith(' ' + kv)) throw new Error(`${what}: at ${pos} got ${got}, want ${kv}`)
    }
    if (this.got.size !== want.size)
      throw new Error(`${what}: consumed ${this.got.size} records, want ${want.size}`)
  }
}

async function member(bootstrap, topic, group, name, ledger) {
  const consumer = kafka(bootstrap, name).consumer({
    groupId: group,
    sessionTimeout: 10000,
    heartbeatInterval: 500,
    rebalanceTimeout: 20000,
    maxWaitTimeInMs: 200,
  })
  const m = { name, consumer, assigned: new Set(), consumed: 0, error: null }
  consumer.on(consumer.events.GROUP_JOIN, e => {
    m.assigned = new Set(e.payload.memberAssignment[topic] || [])
  })
  consumer.on(consumer.events.CRASH, e => {
    m.error = String(e.payload.error)
  })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, heartbeat }) => {
      for (const msg of batch.messages) {
        ledger.add(name, batch.partition, msg)
        m.consumed++
      }
      if (batch.messages.length) {
        const next = (BigInt(batch.lastOffset()) + 1n).toString()
        await consumer.commitOffsets([{ topic, partition: batch.partition, offset: next }])
      }
      await heartbeat()
    },
  })
  return m
}

async function produceSpread(bootstrap, topic, partitions, label, count) {
  const producer = kafka(bootstrap).producer()
  await producer.connect()
  const want = new Map()
  try {
    for (let p = 0; p < partitions; p++) {
      const messages = []
      const kvs = []
      for (let i = p; i < count; i += partitions) {
        messages.push({ partition: p, key: `${label}-k-${i}`, value: `${label}-v-${i}` })
        kvs.push(`${label}-k-${i} ${label}-v-${i}`)
      }
      const res = await producer.send({ topic, acks: -1, messages })
      const base = Number(res[0].baseOffset)
      kvs.forEach((kv, j) => want.set(`${p}/${base + j}`, kv))
    }
  } finally {
    await producer.disconnect()
  }
  return want
}

const list = s => ([...s].length ? [...s].sort((x, y) => x - y).join(',') : '-')

// group BOOTSTRAP TOPIC PARTITIONS GROUP PROTOCOL: see Scenarios.group in the Java program.
async function group(a) {
  const [bootstrap, topic, partitionsS, groupId, protocol] = a
  if (protocol !== 'classic') throw new Unsupported('KafkaJS speaks only the classic group protocol')
  const partitions = Number(partitionsS)
  const all = list([...Array(partitions).keys()])
  const ledger = new Ledger()
  const m1 = await member(bootstrap, topic, groupId, 'node-m1', ledger)
  const m2 = await member(bootstrap, topic, groupId, 'node-m2', ledger)
  await waitFor(
    'two members own disjoint partitions covering the topic',
    () =>
      m1.assigned.size &&
      m2.assigned.size &&
      list([...m1.assigned, ...m2.assigned]) === all,
    [m1, m2]
  )
  for (const m of [m1, m2]) out(`member ${m.name} assigned ${list(m.assigned)}`)
  await pause('balanced')
  let want = await produceSpread(bootstrap, topic, partitions, 'phase1', 200)
  await waitFor('every phase1 record consumed', () => ledger.got.size >= want.size, [m1, m2])
  await sleep(500)
  ledger.check('two members', want)
  for (const m of [m1, m2]) out(`member ${m.name} consumed ${m.consumed}`)
  await m1.consumer.disconnect()
  await waitFor('node-m2 takes every partition', () => list(m2.assigned) === all, [m2])
  out(`member node-m2 assigned ${list(m2.assigned)}`)
  await pause('takeover')
  ledger.got.clear()
  want = await produceSpread(bootstrap, topic, partitions, 'phase2', 100)
  await waitFor('every phase2 record consumed', () => ledger.got.size >= want.size, [m2])
  await sleep(500)
  ledger.check('survivor', want)
  await m2.consumer.disconnect()
  await pause('empty')
  ledger.got.clear()
  want = await produceSpread(bootstrap, topic, partitions, 'phase3', 20)
  const m3 = await member(bootstrap, topic, groupId, 'node-m3', ledger)
  await waitFor('node-m3 reads the new records', () => ledger.got.size >= want.size, [m3])
  await sleep(1000)
  ledger.check('resumed member', want)
  out(`member node-m3 consumed ${m3.consumed}`)
  await m3.consumer.disconnect()
}

const kvs = a =>
  a.map(s => {
    const i = s.indexOf('=')
    return [s.slice(0, i), s.slice(i + 1)]
  })

async function admin(name, a) {
  const k = kafka(a[0])
  const adm = k.admin()
  await adm.connect()
  try {
    switch (name) {
      case 'admin-create-topic': {
        await adm.createTopics({
          waitForLeaders: true,
          topics: [
            {
              topic: a[1],
              numPartitions: Number(a[2]),
              replicationFactor: 1,
              configEntries: kvs(a.slice(3)).map(([n, v]) => ({ name: n, value: v })),
            },
          ],
        })
        out(`created ${a[1]}`)
        break
      }
      case 'admin-list-topics':
        for (const t of (await adm.listTopics()).filter(t => !t.startsWith('__')).sort()) out(`topic ${t}`)
        break
      case 'admin-describe-topic': {
        const md = await adm.fetchTopicMetadata({ topics: [a[1]] })
        const t = md.topics[0]
        out(`topic ${t.name} id - internal false`)
        for (const p of t.partitions.sort((x, y) => x.partitionId - y.partitionId))
          out(`partition ${p.partitionId} leader ${p.leader} replicas ${p.replicas.join(',')} isr ${p.isr.join(',')}`)
        break
      }
      case 'admin-create-partitions':
        await adm.createPartitions({ topicPartitions: [{ topic: a[1], count: Number(a[2]) }] })
        out(`partitions ${a[1]} ${a[2]}`)
        break
      case 'admin-delete-topic':
        await adm.deleteTopics({ topics: [a[1]], timeout: 20000 })
        out(`deleted ${a[1]}`)
        break
      case 'admin-describe-configs': {
        const type = a[1] === 'broker' ? ConfigResourceTypes.BROKER : ConfigResourceTypes.TOPIC
        const res = await adm.describeConfigs({ includeSynonyms: false, resources: [{ type, name: a[2] }] })
        for (const r of res.resources) {
          if (r.errorCode) throw new Error(`describe configs: error ${r.errorCode} ${r.errorMessage}`)
          for (const c of r.configEntries) out(`config ${c.configName}=${c.configValue} ${c.configSource}`)
        }
        break
      }
      case 'admin-alter-configs': {
        // KafkaJS has only the legacy AlterConfigs (the whole set is replaced).
        const type = a[1] === 'broker' ? ConfigResourceTypes.BROKER : ConfigResourceTypes.TOPIC
        const entries = kvs(a.slice(3)).filter(([, v]) => v !== '').map(([n, v]) => ({ name: n, value: v }))
        await adm.alterConfigs({ validateOnly: false, resources: [{ type, name: a[2], configEntries: entries }] })
        out('altered')
        break
      }
      case 'admin-list-offsets': {
        const [, topic, , spec] = a
        let offs
        if (spec === 'earliest') offs = (await adm.fetchTopicOffsets(topic)).map(o => ({ ...o, offset: o.low }))
        else if (spec === 'latest') offs = (await adm.fetchTopicOffsets(topic)).map(o => ({ ...o, offset: o.high }))
        else if (spec === 'max-timestamp') throw new Unsupported('KafkaJS has no max-timestamp ListOffsets')
        else offs = await adm.fetchTopicOffsetsByTimestamp(topic, Number(spec))
        for (const o of offs.sort((x, y) => x.partition - y.partition)) out(`offset ${o.partition} ${o.offset} -1`)
        break
      }
      case 'admin-delete-records': {
        // deleteTopicRecords looks the leaders up in the admin's metadata cache without
        // loading it (a KafkaJS quirk, "Topic metadata not loaded"): load it first.
        await adm.fetchTopicMetadata({ topics: [a[1]] })
        await adm.deleteTopicRecords({ topic: a[1], partitions: [{ partition: Number(a[2]), offset: a[3] }] })
        // KafkaJS does not return the new low watermark: read it back.
        const o = (await adm.fetchTopicOffsets(a[1])).find(x => x.partition === Number(a[2]))
        out(`low-watermark ${a[2]} ${o.low}`)
        break
      }
      case 'admin-list-groups':
        for (const g of (await adm.listGroups()).groups) out(`group ${g.groupId} ${g.protocolType} ?`)
        break
      case 'admin-describe-group': {
        const { groups } = await adm.describeGroups([a[1]])
        const g = groups[0]
        if (g.errorCode) throw new Error(`describe group: error ${g.errorCode}`)
        out(`group ${g.groupId} state ${g.state} type ${g.protocolType} members ${g.members.length}`)
        for (const m of g.members) {
          const asg = AssignerProtocol.MemberAssignment.decode(m.memberAssignment)
          const ps = asg ? Object.values(asg.assignment).flat() : []
          out(`member ${m.clientId} ${list(ps)}`)
        }
        break
      }
      case 'admin-list-group-offsets': {
        for (const t of await adm.fetchOffsets({ groupId: a[1] }))
          for (const p of t.partitions.sort((x, y) => x.partition - y.partition))
            out(`committed ${t.topic} ${p.partition} ${p.offset}`)
        break
      }
      case 'admin-alter-group-offsets':
        await adm.setOffsets({
          groupId: a[1],
          topic: a[2],
          partitions: kvs(a.slice(3)).map(([p, o]) => ({ partition: Number(p), offset: o })),
        })
        out('altered')
        break
      case 'admin-delete-group':
        await adm.deleteGroups([a[1]])
        out(`deleted ${a[1]}`)
        break
      case 'admin-describe-cluster': {
        const c = await adm.describeCluster()
        out(`cluster ${c.clusterId} controller ${c.controller}`)
        for (const b of c.brokers) out(`node ${b.nodeId} ${b.host}:${b.port}`)
        break
      }
      case 'admin-describe-acls': {
        const { AclResourceTypes, AclOperationTypes, AclPermissionTypes, ResourcePatternTypes } = require('kafkajs')
        const r = await adm.describeAcls({
          resourceType: AclResourceTypes.ANY,
          resourcePatternType: ResourcePatternTypes.ANY,
          operation: AclOperationTypes.ANY,
          permissionType: AclPermissionTypes.ANY,
        })
        out(`acls ${r.resources.length}`)
        break
      }
      default:
        throw new Unsupported(`${name}: KafkaJS has no API for it`)
    }
  } finally {
    await adm.disconnect()
  }
}

async function run(words) {
  const [name, ...a] = words
  if (name === 'produce') return produce(a)
  if (name === 'consume') return consume(a)
  if (name === 'group') return group(a)
  return admin(name, a)
}

async function main() {
  out('@@ready')
  for (;;) {
    const line = await nextLine()
    if (line === null) break
    if (!line) continue
    let code = 0
    try {
      await run(line.split('\t'))
    } catch (e) {
      process.stderr.write(`command ${JSON.stringify(line)} failed: ${e && e.stack}\n`)
      out(`error ${String(e && e.name)}: ${String(e && e.message).replace(/\n/g, ' ')}`)
      code = e instanceof Unsupported ? 3 : 1
    }
    out(`@@exit ${code}`)
  }
  process.exit(0)
}

main()

"""Bounce wordings the shared reason table lacks: phrases that outrank it, and non-English ones.

=========================  ===========================================================  ==============
table                      what it holds                                                 tried
=========================  ===========================================================  ==============
``FIRST``                  temporary DNS failures, "on hold", "account disabled",       before the
                           "inactive email address", "user not exist", "not in the      shared table
                           directory": phrases the shared table reads the wrong way
``FOREIGN``                German, French, Spanish, Portuguese, Russian, Chinese and     after it
                           Japanese "user unknown", "mailbox full", "not in the
                           directory", "account disabled", "host unknown"
``TEMPORARY``              "try again", "temporarily": a hard-looking text that says     veto
                           the failure may pass is not a verdict on the address
=========================  ===========================================================  ==============

Phrases are lower case with single spaces (compared with ``domain.reasons.normalise_text``).
"""

from __future__ import annotations

import re

from mailtrack.domain.reasons import PHRASES, PhraseTable

FIRST: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Postfix's temporary resolver answers ("Host not found, try again", "Malformed or unexpected
    # name server reply") are DNS trouble on the way, not a verdict on the recipient's domain.
    ("network_error", (
        "host not found, try again", "host or domain name not found, try again", "name server reply",
        "temporary failure in name resolution", "servfail", "dns temporary failure",
        "try again later (dns)", "name server failure",
    )),
    ("on_hold", (
        "on hold", "is held", "held for", "quarantined", "being held", "awaits moderator approval",
        "awaiting moderator approval",
    )),
    # Replies whose code says "unknown user" (x.1.1) but whose words say full, disabled or filtered:
    # the words decide, and none of these is about the address itself.
    ("mailbox_full", (
        "exceeding their quota", "overquota", "over-quota", "quota violation", "exceeds their quota",
        "boite du destinataire pleine", "exceed maximum allowed storage", "exceeded its disk space",
        "space has been used up", "too much mail data", "has exceeded quota", "over the quota",
        "not have enough space", "insufficient system storage", "exceeds allowed size", "inbox full",
        "storage full", "mailbox size exceeded", "mailbox has exceeded", "exceeded the storage",
    )),
    ("suspended", (
        "mailbox unavailable or access denied", "recipient suspend the service", "user or domain is disabled",
        "boite du destinataire archivee", "account closed", "account has been closed", "has been disabled",
    )),
    ("filtered", (
        "only accepting mail from specific", "has restricted sms e-mail", "is not accepting any mail",
        "this account is protected by", "domain filter",
    )),
    ("policy_violation", ("mailbox unavailable due to policy",)),
    ("system_error", ("mailbox temporarily unavailable", "mailbox is temporarily unavailable")),
    ("network_error", ("maximum hop count", "temporary lookup failure")),
    # the sender's domain, not the recipient's
    ("rejected", ("your domain has no mx", "sender domain must exist", "not authorized to send")),
    ("network_error", (
        "message looping", "message is looping", "looping detected", "loop detected", "loop alert", "looped",
    )),
    ("suspended", (
        "account disabled", "account is disabled", "account has been disabled", "account is inactive",
        "account has been suspended", "mailbox disabled", "mailbox is disabled", "user disabled",
        "tried to reach is disabled", "address is disabled", "recipient is disabled",
    )),
    ("user_unknown", (
        "inactive email address", "inactive e-mail address", "email address is inactive", "inactive address",
        "inactive recipient", "user not known", "user not exist", "users not exist", "user not exists",
        "account not exist",
        "mailbox not exist", "address not exist", "recipient not exist", "not in the directory",
        "not found in the directory", "not found in directory", "not in directory", "not listed in the directory",
        "not listed in domino directory", "not listed in public name & address book",
        "not listed in public name and address book",
        # qmail, vpopmail, Courier, Exchange and provider wordings of "no such address"
        "archived recipient", "bad address", "bad recipient address", "is not an active address",
        "mailbox invalid", "mailbox is unavailable", "mailbox not present", "no mail box available",
        "account unavailable", "not a valid recipient", "not a local address", "not a known user",
        "recipient is not accepted", "recipient is not local", "recipient not ok", "badrcptto",
        "envelope recipient has been denied", "wrong or no longer valid", "badrecipientto", "validrcptto",
        "unknown mailbox", "user missing home directory", "unknown virtual user", "no such account",
        "mailbox name not allowed", "not a valid e-mail address", "not a valid email address",
        "address is not valid", "unknown local user", "no such local user", "address is no longer in use",
        "not a valid address", "invalid e-mail address", "invalid email address", "email address is not valid",
        "user account not found", "user invalid", "recipient invalid", "address couldn't be found",
        "address could not be found", "address you entered couldn't be found", "recipient domain must exist",
    )),
    ("host_unknown", ("domain has no mx", "no valid mx")),
)  # fmt: skip

# Generic words tried after the shared table: they decide only when nothing more specific does.
LATE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("system_error", ("service unavailable", "temporarily unavailable")),
    ("blocked", ("greylist", "graylist")),
)  # fmt: skip

FOREIGN: tuple[tuple[str, tuple[str, ...]], ...] = (
    # A list or group that "may not exist, or you may not post to it" refuses the sender.
    ("rejected", (
        "keine berechtigung", "nicht berechtigt", "pas autorisé", "pas le droit", "no tienes permiso",
        "no tiene permiso", "no está autorizado", "não tem permissão", "sem permissão", "нет прав",
        "нет разрешения", "没有权限", "沒有權限", "无权", "權限", "权限", "権限がない", "権限がありません",
    )),
    ("mailbox_full", (
        # de / fr / es / pt / ru / zh / ja
        "postfach voll", "postfach ist voll", "mailbox voll", "speicherplatz", "quota überschritten",
        "kontingent überschritten", "speicherkontingent",
        "boîte aux lettres pleine", "boite aux lettres pleine", "boîte pleine", "boite pleine",
        "boîte aux lettres est pleine", "quota dépassé", "quota depasse", "espace insuffisant",
        "buzón lleno", "buzon lleno", "buzón está lleno", "buzon esta lleno", "cuota excedida",
        "caixa postal cheia", "caixa de correio cheia", "caixa de correio está cheia", "cota excedida",
        "quota excedida", "caixa postal está cheia",
        "ящик переполнен", "ящик заполнен", "превышен размер ящика", "превышена квота", "нет места",
        "邮箱已满", "邮箱空间不足", "信箱已满", "信箱已滿", "郵箱已滿", "邮箱容量", "空间不足",
        "メールボックスがいっぱい", "メールボックスが一杯", "容量オーバー", "容量超過", "容量を超え",
        "メールボックス容量", "容量がいっぱい", "いっぱいです", "いっぱいのため", "満杯",
        # stems of "the recipient's mailbox is full" in Exchange's localised reports
        "postfach des empfängers ist voll", "est pleine", "está lleno", "está llena", "está cheia",
        "переполнен", "容量已满", "存储空间已满",
    )),
    ("suspended", (
        "konto deaktiviert", "konto ist deaktiviert", "konto gesperrt", "konto wurde gesperrt",
        "postfach gesperrt", "postfach deaktiviert",
        "compte désactivé", "compte desactive", "compte suspendu", "compte bloqué",
        "cuenta deshabilitada", "cuenta desactivada", "cuenta suspendida", "cuenta bloqueada",
        "conta desativada", "conta desactivada", "conta suspensa", "conta bloqueada",
        "учетная запись отключена", "учётная запись отключена", "учетная запись заблокирована",
        "ящик заблокирован", "ящик отключен",
        "帐户已被禁用", "账户已被禁用", "账户已停用", "帐户已停用", "帳戶已停用", "账号已冻结", "账户被冻结",
        "アカウントが無効", "アカウントは無効", "アカウントが停止", "利用停止",
        "deaktiviert", "gesperrt", "désactivé", "deshabilitad", "desactivad", "desativad",
        "заблокирован", "отключен", "已禁用", "被禁用", "已停用", "已冻结", "無効になって",
    )),
    ("host_unknown", (
        "domäne existiert nicht", "domain existiert nicht", "unbekannte domain",
        "domaine inconnu", "domaine inexistant", "dominio desconocido", "dominio inexistente",
        "domínio inexistente", "domínio desconhecido", "домен не существует", "неизвестный домен",
        "域名不存在", "ドメインが存在しません",
    )),
    ("user_unknown", (
        "benutzer unbekannt", "unbekannter benutzer", "empfänger unbekannt", "unbekannter empfänger",
        "adresse unbekannt", "unbekannte adresse", "postfach existiert nicht", "existiert nicht",
        "nicht im verzeichnis", "nicht im domino-verzeichnis", "kein solcher benutzer", "ungültiger empfänger",
        "utilisateur inconnu", "destinataire inconnu", "adresse inconnue", "n'existe pas", "n’existe pas",
        "adresse invalide", "pas dans l'annuaire", "introuvable dans l'annuaire", "n'est pas répertorié",
        "usuario desconocido", "destinatario desconocido", "dirección desconocida", "no existe",
        "no se encuentra en el directorio", "buzón no disponible", "cuenta no existe", "usuario inexistente",
        "usuário desconhecido", "utilizador desconhecido", "destinatário desconhecido", "não existe",
        "nao existe", "usuário inexistente", "endereço inexistente", "não encontrado no diretório",
        "пользователь не найден", "нет такого пользователя", "неизвестный пользователь", "не существует",
        "адресат не найден", "получатель не найден", "несуществующий",
        "用户不存在", "用戶不存在", "收件人不存在", "收件人地址不存在", "地址不存在", "帐户不存在",
        "账户不存在", "账号不存在", "无此用户", "查无此人",
        "宛先不明", "存在しない", "ユーザが存在しません", "ユーザーが存在しません", "そのようなユーザー",
        "不明なユーザー", "登録されていません", "ディレクトリのリストにありません", "ディレクトリにありません",
        # stems of "unknown" / "was not found" (Exchange's localised "the address wasn't found")
        "wurde nicht gefunden", "nicht gefunden", "unbekannt", "introuvable", "inconnu", "no se encontró",
        "no se encuentra", "desconocid", "inexistente", "não foi encontrad", "não encontrad", "desconhecid",
        "не найден", "неизвестн", "不存在", "找不到", "未找到", "見つかりません",
    )),
)  # fmt: skip

# "try again", "temporarily": the failure may pass, whatever else the text says.
# "Check the address and try again" is advice to the sender, not a temporary failure.
TEMPORARY = re.compile(r"(?<!and )try again|temporar|vorübergehend|temporaire|temporal|temporário|временно|暂时|一時的")


# FIRST, then the shared reason table, LATE, then FOREIGN: one scan of a text finds the first-ranked phrase.
WORDS = PhraseTable(FIRST, PHRASES, LATE, FOREIGN)


-- The domain: contacts, and the address book that holds them and the edit form's state.

Contact = session:prototype("Contact", {
    first = "",
    last = "",
    email = "",
    phone = "",
})

function Contact:fullName()
    if self.last == "" then return self.first end
    return self.first .. " " .. self.last
end

--- Whether the contact matches a (lower-case) search text.
function Contact:matches(text)
    if text == "" then return true end
    return self:fullName():lower():find(text, 1, true) ~= nil
        or self.email:lower():find(text, 1, true) ~= nil
end

AddressBook = session:prototype("AddressBook", {
    title = "Contacts",
    search = "",
    contacts = EMPTY,
    editing = EMPTY,   -- the contact the form edits; nil while adding a new one
    formOpen = false,
    formFirst = "",
    formLast = "",
    formEmail = "",
    formPhone = "",
    problem = "",
})

function AddressBook:new(init)
    local book = session:create(AddressBook, init)
    book.contacts = book.contacts or {}
    return book
end

function AddressBook:add(first, last, email, phone)
    local c = session:create(Contact, {first = first, last = last, email = email, phone = phone})
    table.insert(self.contacts, c)
    return c
end

--- The contacts the search lets through, in order: what the list shows.
function AddressBook:visible()
    local text = (self.search or ""):lower()
    local out = {}
    for _, c in ipairs(self.contacts) do
        if c:matches(text) then out[#out + 1] = c end
    end
    return out
end

function AddressBook:count() return #self:visible() end
function AddressBook:formClosed() return not self.formOpen end

function AddressBook:newContact()
    self.editing = nil
    self:openForm("", "", "", "")
end

function AddressBook:edit(contact)
    self.editing = contact
    self:openForm(contact.first, contact.last, contact.email, contact.phone)
end

function AddressBook:openForm(first, last, email, phone)
    self.formOpen = true
    self.formFirst, self.formLast, self.formEmail, self.formPhone = first, last, email, phone
    self.problem = ""
end

function AddressBook:save()
    if self.formFirst == "" then
        self.problem = "A contact needs a first name"
        return
    end
    if not self.formEmail:find("@", 1, true) then
        self.problem = "An email address has an @"
        return
    end
    local c = self.editing
    if c then
        c.first, c.last, c.email, c.phone = self.formFirst, self.formLast, self.formEmail, self.formPhone
    else
        self:add(self.formFirst, self.formLast, self.formEmail, self.formPhone)
    end
    self:cancel()
end

function AddressBook:cancel()
    self.formOpen = false
    self.editing = nil
    self.problem = ""
end

function AddressBook:remove(contact)
    for i, c in ipairs(self.contacts) do
        if c == contact then
            table.remove(self.contacts, i)
            if self.editing == contact then self:cancel() end
            return
        end
    end
end

return {Contact = Contact, AddressBook = AddressBook}

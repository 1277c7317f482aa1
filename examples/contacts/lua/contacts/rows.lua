-- ContactRow: the presenter of one row of the list. lua.ViewList builds one per row with
-- ContactRow:new(viewListItem); the item knows the contact (baseItem), its position (index)
-- and the list. The row's actions reach the address book through the app object.

ContactRow = session:prototype("ContactRow", {
    item = EMPTY,
    contact = EMPTY,
})

function ContactRow:new(viewListItem)
    return session:create(ContactRow, {item = viewListItem, contact = viewListItem.baseItem})
end

function ContactRow:name() return self.contact:fullName() end
function ContactRow:email() return self.contact.email end
function ContactRow:phone() return self.contact.phone end
function ContactRow:noPhone() return self.contact.phone == "" end
function ContactRow:position() return self.item.index + 1 end

function ContactRow:edit() session:getApp():edit(self.contact) end
function ContactRow:delete() session:getApp():remove(self.contact) end

return ContactRow
